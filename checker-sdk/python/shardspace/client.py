"""A client of the Shardspace API (`:5000`, DESIGN.md §7): submit envelopes, read transactions and objects.

One keep-alive `http.client` connection per Client (not thread-safe: use one
Client per thread). An API error `{"error": {"kind", "message", "hint"}}` is
raised as the ApiError subclass of its kind.
"""

import http.client
import json
from urllib.parse import quote, urlsplit

from .encoding import canonical_json

DEFAULT_URL = "http://127.0.0.1:5000"
# Longer than the API's own wait deadline, so that a slow commit is reported by the API, not by us.
DEFAULT_TIMEOUT_SECONDS = 60.0


class ApiError(Exception):
    """An error answered by the API (or, for ApiUnavailable, no answer at all)."""

    kind = "api_error"

    def __init__(self, message: str, kind: str | None = None, hint: str = "", status: int | None = None, body=None):
        super().__init__(message)
        self.message = message
        self.kind = kind or type(self).kind
        self.hint = hint
        self.status = status
        self.body = body

    def __str__(self):
        where = f"{self.status} " if self.status else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}{self.kind}: {self.message}{hint}"


class MalformedJsonError(ApiError):
    kind = "malformed_json"


class MissingFieldError(ApiError):
    kind = "missing_field"


class WrongTypeError(ApiError):
    kind = "wrong_type"


class FloatNumberError(ApiError):
    kind = "float_number"


class NumberOutOfRangeError(ApiError):
    kind = "number_out_of_range"


class BodyTooLargeError(ApiError):
    kind = "body_too_large"


class UnknownContractError(ApiError):
    kind = "unknown_contract"


class UnknownMethodError(ApiError):
    kind = "unknown_method"


class NotFoundError(ApiError):
    kind = "not_found"


class MethodNotAllowedError(ApiError):
    kind = "method_not_allowed"


class TooManyPendingError(ApiError):
    kind = "too_many_pending"


class ApiUnavailable(ApiError, ConnectionError):
    """The API is down or cannot reach its replicas (kind `unavailable`), or refused the connection."""

    kind = "unavailable"


ERROR_CLASSES = {
    cls.kind: cls
    for cls in (
        MalformedJsonError,
        MissingFieldError,
        WrongTypeError,
        FloatNumberError,
        NumberOutOfRangeError,
        BodyTooLargeError,
        UnknownContractError,
        UnknownMethodError,
        NotFoundError,
        MethodNotAllowedError,
        TooManyPendingError,
        ApiUnavailable,
    )
}


def error_from(status: int, body) -> ApiError:
    """The exception for an error answer: the class of its kind, or ApiError for a kind we do not know."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ApiError(f"the API answered {status} {str(body)[:200]}", kind=f"http_{status}", status=status, body=body)
    kind = str(error.get("kind", f"http_{status}"))
    cls = ERROR_CLASSES.get(kind, ApiError)
    return cls(str(error.get("message", "")), kind=kind, hint=str(error.get("hint", "")), status=status, body=body)


class _Dropped(Exception):
    """The server closed the connection before answering."""


class Client:
    """Talks to the API at `base_url` over one keep-alive connection."""

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the API URL must be http://host:port, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._connection = None

    def submit(self, envelope: dict, wait: bool = True) -> dict:
        """POST the envelope to /v1/transactions: {txId, outcome, reason, outputs, shards}."""
        body = canonical_json(envelope).encode("ascii")
        return self._request("POST", "/v1/transactions" + ("" if wait else "?wait=false"), body)

    def transaction(self, tx_id: str) -> dict:
        return self._request("GET", f"/v1/transactions/{quote(tx_id, safe='')}")

    def object(self, object_id: str) -> dict:
        return self._request("GET", f"/v1/objects/{quote(object_id, safe='')}")

    def cluster(self) -> dict:
        return self._request("GET", "/v1/cluster")

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _request(self, method: str, path: str, body: bytes | None = None) -> dict:
        # A kept-alive connection may have been closed by the server while idle: retry once on a new
        # one. Safe even for a POST, since submitting the same transaction again has the same outcome.
        reused = self._connection is not None
        try:
            return self._result(*self._exchange(method, path, body))
        except _Dropped as dropped:
            if not reused:
                raise self._unavailable(f"the connection dropped: {dropped}") from None
        try:
            return self._result(*self._exchange(method, path, body))
        except _Dropped as dropped:
            raise self._unavailable(f"the connection dropped: {dropped}") from None

    def _exchange(self, method: str, path: str, body) -> tuple:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            self._connection.request(method, self._prefix + path, body=body, headers=headers)
            response = self._connection.getresponse()
            payload = response.read()
        except ConnectionRefusedError:
            self.close()
            raise self._unavailable("connection refused") from None
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
            self.close()
            raise _Dropped(f"{type(error).__name__}: {error}") from None
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise self._unavailable(f"{type(error).__name__}: {error}") from error
        if response.will_close:
            self.close()
        return response.status, payload

    def _unavailable(self, what: str) -> ApiUnavailable:
        return ApiUnavailable(
            f"cannot reach the API at {self.base_url}: {what}",
            hint="is the cluster running? `make start-all` starts a local one",
        )

    @staticmethod
    def _result(status: int, payload: bytes) -> dict:
        try:
            body = json.loads(payload.decode("utf-8")) if payload else None
        except (UnicodeDecodeError, ValueError):
            body = payload[:200].decode("utf-8", "replace")
        if isinstance(body, dict) and "error" in body:
            raise error_from(status, body)
        if not 200 <= status < 300 or not isinstance(body, dict):
            raise error_from(status, body)
        return body
