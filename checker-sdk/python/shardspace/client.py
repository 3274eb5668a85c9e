"""A client of the Shardspace API (`:5000`, DESIGN.md §7): submit envelopes, read transactions and objects,
follow the cluster's decided transactions, wait for one.

One keep-alive `http.client` connection per Client (not thread-safe: use one
Client per thread); `events()` opens a connection of its own. An API error
`{"error": {"kind", "message", "hint"}}` is raised as the ApiError subclass of its kind.
"""

import http.client
import json
import time
from urllib.parse import quote, urlencode, urlsplit

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


# Every error kind of the API and the checkers (docs/checkers.md §2, core's TxError): (kind, class name, meaning).
# One class per kind, generated below; a kind not listed here is raised as a plain ApiError.
ERROR_KINDS = (
    ("malformed_json", "MalformedJsonError", "the body is not JSON, or not a JSON object"),
    ("missing_field", "MissingFieldError", "a required field is absent"),
    ("unknown_field", "UnknownFieldError", "a field the transaction does not have"),
    ("wrong_type", "WrongTypeError", "a field has the wrong type"),
    ("bad_id", "BadIdError", "an id is not 64 lowercase hex digits"),
    ("bad_name", "BadNameError", "a contract or method name breaks the name rule"),
    ("float_number", "FloatNumberError", "a float in the parameters"),
    ("number_out_of_range", "NumberOutOfRangeError", "an integer outside [-2^63, 2^64-1]"),
    ("envelope_too_large", "EnvelopeTooLargeError", "the envelope is over ENVELOPE_BYTES_MAX"),
    ("too_many_inputs", "TooManyInputsError", "a transaction has over INPUTS_MAX inputs"),
    ("too_many_references", "TooManyReferencesError", "a transaction has over REFERENCES_MAX references"),
    ("too_many_outputs", "TooManyOutputsError", "a transaction has over OUTPUTS_MAX outputs"),
    ("too_many_dependencies", "TooManyDependenciesError", "a transaction has over DEPENDENCIES_MAX dependencies"),
    ("dependencies_too_deep", "DependenciesTooDeepError", "dependencies nest deeper than DEPENDENCY_DEPTH_MAX"),
    ("value_too_large", "ValueTooLargeError", "an output or stored value is over VALUE_BYTES_MAX"),
    ("duplicate_input", "DuplicateInputError", "an object is an input twice"),
    ("input_also_reference", "InputAlsoReferenceError", "an object is both an input and a reference"),
    ("missing_from_store", "MissingFromStoreError", "the store lacks the value of an input or reference"),
    ("unexpected_in_store", "UnexpectedInStoreError", "the store holds an object the transaction does not name"),
    ("path_mismatch", "PathMismatchError", "the body's contract or method differs from the path"),
    ("unknown_contract", "UnknownContractError", "no checker serves that contract"),
    ("unknown_method", "UnknownMethodError", "the contract has no such method"),
    ("not_found", "NotFoundError", "no such path, transaction or object"),
    ("method_not_allowed", "MethodNotAllowedError", "the HTTP method is not allowed on that path"),
    ("body_too_large", "BodyTooLargeError", "the request body is over the server's limit"),
    ("checker_failed", "CheckerFailedError", "a checker raised or answered something other than a verdict"),
    ("too_many_pending", "TooManyPendingError", "the API has too many transactions in flight: retry later"),
    ("busy", "BusyError", "the replicas are checking too many transactions: retry later"),
    ("bad_attempt", "BadAttemptError", "the attempt number was refused: submit the transaction again"),
    ("bad_query", "BadQueryError", "a query parameter does not parse"),
    ("bad_event_id", "BadEventIdError", "a Last-Event-ID that is not a cursor of this cluster"),
    ("unavailable", "ApiUnavailable", "the API is down, cannot reach its replicas, or refused the connection"),
    ("timeout", "ApiTimeoutError", "no outcome within the API's wait deadline: ask again for the transaction"),
)


def _error_class(kind: str, name: str, meaning: str) -> type:
    # `unavailable` is also a ConnectionError, so that code catching network failures catches it.
    bases = (ApiError, ConnectionError) if kind == "unavailable" else (ApiError,)
    return type(name, bases, {"kind": kind, "__doc__": f"`{kind}`: {meaning}.", "__module__": __name__})


ERROR_CLASSES = {kind: _error_class(kind, name, meaning) for kind, name, meaning in ERROR_KINDS}
globals().update({cls.__name__: cls for cls in ERROR_CLASSES.values()})
ApiUnavailable = ERROR_CLASSES["unavailable"]  # named here too: this module raises it itself

__all__ = ["DEFAULT_URL", "ERROR_CLASSES", "ERROR_KINDS", "ApiError", "Client", "error_from"] + [
    name for _, name, _ in ERROR_KINDS
]


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

    def transactions(self, contract=None, outcome=None, shard=None, after=None, limit=None) -> dict:
        """A page of decided attempts, filtered: {transactions, next, more}; give `next` as `after` for the next."""
        query = {"contract": contract, "outcome": outcome, "shard": shard, "after": after, "limit": limit}
        query = {key: value for key, value in query.items() if value is not None}
        return self._request("GET", "/v1/transactions" + ("?" + urlencode(query) if query else ""))

    def objects(self, contract=None, status=None, field=None, equals=None, after=None, limit=None) -> dict:
        """A page of objects, filtered: {objects, next, more}; give `next` as `after` for the next.

        `status` is active, locked or inactive; `field` and `equals` keep the objects whose value (JSON) has that
        top-level field equal to it (bank's accounts of one owner: field="owner", equals=KEY). A page may hold
        fewer than `limit` and still have `more`.
        """
        if (field is None) != (equals is None):
            raise ValueError("field and equals go together: field='owner', equals=KEY")
        query = {"contract": contract, "status": status, "field": field, "equals": equals, "after": after}
        query = {key: value for key, value in {**query, "limit": limit}.items() if value is not None}
        return self._request("GET", "/v1/objects" + ("?" + urlencode(query) if query else ""))

    def all_objects(self, contract=None, status=None, field=None, equals=None, page=100):
        """Every object the filter keeps, in id order, asking a page of `page` at a time (see `objects`)."""
        after = None
        while True:
            listed = self.objects(contract, status, field, equals, after=after, limit=page)
            yield from listed["objects"]
            if not listed.get("more"):
                return
            after = listed["next"]

    def stats(self) -> dict:
        """Decided attempts a second over the last minutes, and this API's latency (`/v1/stats`)."""
        return self._request("GET", "/v1/stats")

    def wait_for(self, tx_id: str, timeout: float = 60.0, every: float = 0.05) -> dict:
        """The outcome of `tx_id` once it is decided (`commit` or `abort`), asking every `every` seconds.

        A transaction no shard knows yet is waited for too. Raises ApiTimeoutError after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                outcome = self.transaction(tx_id)
                if outcome.get("outcome") in ("commit", "abort"):
                    return outcome
            except ERROR_CLASSES["not_found"]:
                pass
            if time.monotonic() >= deadline:
                raise ERROR_CLASSES["timeout"](f"{tx_id} was not decided within {timeout} s", hint="ask again later")
            time.sleep(every)

    def history(self, object_id: str) -> dict:
        """An object, the transactions that created and consumed it, and the objects before and after it.

        `before`: the inputs of the transaction that created it; `after`: the outputs of the one that consumed it.
        """
        found = self.object(object_id)
        created = self.transaction(found["createdBy"]) if found.get("createdBy") else None
        consumed = self.transaction(found["consumedBy"]) if found.get("consumedBy") else None
        before = (created or {}).get("transaction", {}).get("inputIDs", [])
        after = (consumed or {}).get("outputs", [])
        return {"object": found, "createdBy": created, "consumedBy": consumed, "before": before, "after": after}

    def events(self, last_event_id: str | None = None, contract=None, shard=None, outcome=None, reconnect=True):
        """Every attempt the cluster decides from now on (or after `last_event_id`), as it is decided.

        Yields each event's data (`txId`, `attempt`, `outcome`, `contract`, ...) with its `eventId`: pass the
        last one back to resume, here or on another API of the cluster, missing nothing and repeating
        nothing. A dropped stream is opened again from the last event (unless `reconnect` is false).
        """
        query = {key: value for key, value in (("contract", contract), ("shard", shard), ("outcome", outcome))}
        path = self._prefix + "/v1/events"
        query = {key: value for key, value in query.items() if value is not None}
        if query:
            path += "?" + urlencode(query)
        delay = 0.1
        while True:
            try:
                for kind, event_id, event in self._stream(path, last_event_id):
                    # `start` says where a stream starts: one dropped before its first event goes on from there.
                    last_event_id = event_id or last_event_id
                    if kind == "decided":
                        delay = 0.1
                        yield event
                dropped = "the stream ended"
            except (OSError, http.client.HTTPException) as error:
                dropped = f"{type(error).__name__}: {error}"
            except ApiError as error:
                # A 4xx is the caller's to fix; the API down or busy (5xx, no connection) is waited out.
                if error.status is not None and 400 <= error.status < 500:
                    raise
                dropped = str(error)
            if not reconnect:
                raise self._unavailable(f"the event stream dropped: {dropped}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _stream(self, path: str, last_event_id: str | None):
        """The events of one connection to `path`, from `last_event_id` on: (kind, id, data) of each."""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=None)
        try:
            headers = {"Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                connection.request("GET", path, headers=headers)
            except ConnectionRefusedError:
                raise self._unavailable("connection refused") from None
            response = connection.getresponse()
            if response.status != 200:
                self._result(response.status, response.read())
            fields = {}
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                    continue
                if fields.get("event") == "decided" and "data" in fields:
                    event = json.loads(fields["data"])
                    event["eventId"] = fields.get("id")
                    yield "decided", fields.get("id"), event
                elif fields.get("event") == "start":
                    yield "start", fields.get("id"), None
                fields = {}
        finally:
            connection.close()

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
