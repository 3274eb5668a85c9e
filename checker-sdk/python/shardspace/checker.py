"""The checker server: serves the checkers of one or many Contracts over HTTP (docs/checkers.md §2).

Replicas POST checker requests to `/{contractID}/{methodID}` and get a verdict,
or many at once to `/batch` and get a verdict (or an error) for each;
`GET /` lists what this process serves. Every bad request gets a JSON error
`{"error": {"kind", "message", "hint"}}` and the server goes on serving.

    python -m shardspace.checker --port 0 contracts/python/bank/bank.py ...

prints its base URL as the first line on stdout. `serve()` runs one in a
background thread, for tests.
"""

import argparse
import importlib.util
import itertools
import json
import logging
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .contract import CheckerFailed, Contract, RequestError, validate_request
from .jsonvalue import JsonValueError, parse_json
from .limits import CHECKER_BATCH_MAX, CHECKER_BODY_BYTES_MAX, JSON_NESTING_MAX

log = logging.getLogger("shardspace.checker")

__all__ = ["CHECKER_BATCH_MAX", "CHECKER_BODY_BYTES_MAX", "CheckerServer", "load_contracts", "load_module", "main", "serve"]

# Every connection holds a thread: bound them, so a flood of connections cannot exhaust the process.
CHECKER_CONNECTIONS_MAX = 256
# Longer than the 90 s idle timeout of hyper's pool (the replicas' client), so the client closes first
# and never sends a request into a connection we are closing.
CHECKER_IDLE_TIMEOUT_SECONDS = 120
# After a 411/413 we read (and drop) what the client still sends, so that it sees our answer
# instead of a reset; bounded in bytes and time.
CHECKER_DRAIN_BYTES_MAX = 16 * 1024 * 1024
CHECKER_DRAIN_SECONDS = 2.0

_HINTS = {
    "malformed_json": "send a JSON object encoded as UTF-8: no NaN or Infinity, no number that overflows a "
    f"64-bit float, at most {JSON_NESTING_MAX} nested arrays and objects",
    "missing_field": "a checker request has contractID, methodID, inputs, referenceInputs, parameters, "
    "returns, outputs and dependencies (docs/checkers.md §2)",
    "wrong_type": "see the checker request's field types in docs/checkers.md §2",
    "float_number": "numbers in parameters are integers: pass other numbers as strings",
    "number_out_of_range": "integers in parameters lie in [-2^63, 2^64-1]: pass larger ones as strings",
    "path_mismatch": "POST to /{contractID}/{methodID} of the request body",
    "unknown_contract": "GET / lists the contracts this checker serves",
    "unknown_method": "GET / lists the methods this checker serves",
    "not_found": "POST checker requests to /{contractID}/{methodID} (matched as sent: no percent-decoding) "
    "or to /batch; GET / lists what is served",
    "method_not_allowed": "use POST /{contractID}/{methodID} or POST /batch, or GET /",
    "length_required": "send a Content-Length header (this server does not take chunked bodies)",
    "body_too_large": f"a checker request is at most {CHECKER_BODY_BYTES_MAX} bytes",
    "batch_too_large": f"send at most {CHECKER_BATCH_MAX} requests per batch",
    "checker_failed": "a bug in the contract: a checker returns True / False or raises Reject(reason); "
    "see the checker's log",
    "too_many_connections": "close idle connections, or retry later",
    "bad_request": "send a well-formed HTTP/1.1 request",
}


class CheckerServer(ThreadingHTTPServer):
    """An HTTP server answering checker requests for `contracts` ({name: Contract})."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, contracts, connections_max: int = CHECKER_CONNECTIONS_MAX):
        self.contracts = _by_name(contracts)
        self.connections_max = connections_max
        # Open connections, so that close() can end idle keep-alive ones instead of waiting for them.
        self._connections = set()
        self._connections_lock = threading.Lock()
        self._thread = None
        super().__init__(address, CheckerHandler)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS look-up (getfqdn), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{host}:{self.server_port}"

    def process_request(self, request, client_address):
        with self._connections_lock:
            refuse = len(self._connections) >= self.connections_max
            if not refuse:
                self._connections.add(request)
        if refuse:
            _refuse_connection(request, self.connections_max)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client that hangs up mid-answer is routine; anything else is a bug of ours, worth a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.debug("connection from %s lost: %s", client_address, error)
        else:
            log.error("internal error serving %s", client_address, exc_info=True)

    def start(self):
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="checker-server", daemon=True)
        self._thread.start()
        return self

    def close(self):
        """Stop accepting, end open connections, release the port."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _by_name(contracts) -> dict:
    if isinstance(contracts, Contract):
        contracts = [contracts]
    served = {}
    for contract in contracts:
        if not isinstance(contract, Contract):
            raise TypeError(f"can only serve Contracts, not {contract!r}")
        other = served.setdefault(contract.name, contract)
        if other is not contract:
            raise ValueError(f"two different contracts are named {contract.name!r}")
    return served


def _refuse_connection(request, connections_max: int) -> None:
    body = _error_body("too_many_connections", f"this checker already has {connections_max} open connections")
    head = f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    try:
        request.settimeout(1.0)
        request.sendall(head.encode("ascii") + b"Connection: close\r\n\r\n" + body)
    except OSError:
        pass  # the client is gone already
    log.warning("refused a connection: %d connections are open", connections_max)


def _error(kind: str, message: str) -> dict:
    return {"error": {"kind": kind, "message": message, "hint": _HINTS.get(kind, "")}}


def _error_body(kind: str, message: str) -> bytes:
    return json.dumps(_error(kind, message), separators=(",", ":")).encode("ascii")


def _verdict(success: bool, reason) -> dict:
    return {"success": True} if success else {"success": False, "reason": reason}


class CheckerHandler(BaseHTTPRequestHandler):
    """One connection: parses each request, routes it, answers JSON; keep-alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = CHECKER_IDLE_TIMEOUT_SECONDS
    server_version = "shardspace-checker/0.1.0"

    def version_string(self):
        return self.server_version  # without http.server's Python version

    def do_POST(self):
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_POST

    def _dispatch(self):
        body = self._read_body()
        if body is None:
            return  # answered (411 / 413) and closing
        target = _request_target(self.requestline, self.path)
        segments = _route(target)
        if segments == _BATCH:
            if self.command != "POST":
                return self._fail(405, "method_not_allowed", f"{self.command} /batch is not allowed; POST is")
            return self._batch(body)
        if segments == []:
            if self.command != "GET":
                return self._fail(405, "method_not_allowed", f"{self.command} / is not allowed; GET / is")
            listing = {name: contract.checker_methods for name, contract in self.server.contracts.items()}
            return self._send_json(200, {"contracts": listing})
        if segments is None:
            return self._fail(404, "not_found", f"no such path: {target[:200]}")
        if self.command != "POST":
            return self._fail(405, "method_not_allowed", f"{self.command} is not allowed here; POST is")
        self._check(segments[0], segments[1], body)

    def _served(self, contract_id: str, method_id: str):
        """(the contract, None), or (None, (404, kind, message)) when nothing here checks that method."""
        contract = self.server.contracts.get(contract_id)
        if contract is None:
            return None, (404, "unknown_contract", f"this checker does not serve contract {contract_id!r}")
        if not contract.checks(method_id):
            return None, (404, "unknown_method", f"contract {contract_id!r} has no method {method_id!r}")
        return contract, None

    def _check(self, contract_id: str, method_id: str, body: bytes):
        contract, unserved = self._served(contract_id, method_id)
        if unserved is not None:
            return self._fail(*unserved)
        request = self._parse_request(body)
        if request is None:
            return  # answered 400
        if request["contractID"] != contract_id or request["methodID"] != method_id:
            message = (
                f"the body is for {request['contractID']!r}.{request['methodID']!r} "
                f"but was sent to /{contract_id}/{method_id}"
            )
            return self._fail(400, "path_mismatch", message)
        try:
            success, reason = contract.run_checker(method_id, request)
        except CheckerFailed as error:
            return self._fail(500, "checker_failed", str(error), cause=error.__cause__)
        self._send_json(200, _verdict(success, reason))

    def _batch(self, body: bytes):
        """POST /batch: {"requests": [...]} answered {"results": [...]}, each result what its own call would give."""
        batch = self._parse_object(body)
        if batch is None:
            return  # answered 400
        if "requests" not in batch:
            return self._fail(400, "missing_field", "missing field `requests`")
        requests = batch["requests"]
        if not isinstance(requests, list):
            return self._fail(400, "wrong_type", "field `requests` should be a list")
        if len(requests) > CHECKER_BATCH_MAX:
            message = f"the batch holds {len(requests)} requests; at most {CHECKER_BATCH_MAX} are taken"
            return self._fail(413, "batch_too_large", message)
        self._send_json(200, {"results": [self._batch_item(request) for request in requests]})

    def _batch_item(self, request) -> dict:
        def failed(status: int, kind: str, message: str, cause=None) -> dict:
            if status >= 500:
                log.error("%d in /batch: %s%s", status, message, _where(cause))
            else:
                log.warning("%d in /batch: %s", status, message)
            return {"status": status, **_error(kind, message)}

        if not isinstance(request, dict):
            return failed(400, "malformed_json", f"the request is a JSON {type(request).__name__}, not an object")
        try:
            validate_request(request)
        except RequestError as error:
            return failed(400, error.kind, str(error))
        contract, unserved = self._served(request["contractID"], request["methodID"])
        if unserved is not None:
            return failed(*unserved)
        try:
            return _verdict(*contract.run_checker(request["methodID"], request))
        except CheckerFailed as error:
            return failed(500, "checker_failed", str(error), cause=error.__cause__)

    def _parse_object(self, body: bytes):
        """The body as a JSON object, or None after answering 400 malformed_json."""
        try:
            # As serde_json reads it: NaN, overflowing numbers, lone surrogates and deep nesting are refused.
            value = parse_json(body)
        except JsonValueError as error:
            return self._fail(400, "malformed_json", f"the body: {error.message}")
        if not isinstance(value, dict):
            return self._fail(400, "malformed_json", f"the body is a JSON {type(value).__name__}, not an object")
        return value

    def _parse_request(self, body: bytes):
        request = self._parse_object(body)
        if request is None:
            return None  # answered 400
        try:
            validate_request(request)  # fields, then numbers in parameters
        except RequestError as error:
            return self._fail(400, error.kind, str(error))
        return request

    def _read_body(self):
        """The request body, or None after answering 411 / 413 (and then closing the connection)."""
        if "Transfer-Encoding" in self.headers:
            return self._refuse_body(411, "length_required", "chunked bodies are not taken; send Content-Length")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.command in ("POST", "PUT", "PATCH"):
                return self._refuse_body(411, "length_required", "the request has no Content-Length")
            return b""
        length_header = length_header.strip()
        if not length_header.isdigit() or not length_header.isascii():
            return self._refuse_body(411, "length_required", f"Content-Length {length_header[:40]!r} is not a number")
        length = int(length_header)
        if length > CHECKER_BODY_BYTES_MAX:
            message = f"the body is {length} bytes; at most {CHECKER_BODY_BYTES_MAX} are taken"
            return self._refuse_body(413, "body_too_large", message, drain_bytes=length)
        return self.rfile.read(length)

    def _refuse_body(self, status: int, kind: str, message: str, drain_bytes: int = CHECKER_DRAIN_BYTES_MAX):
        # We do not read this body, so the connection cannot carry another request: close it.
        self.close_connection = True
        self._fail(status, kind, message)
        self._drain(min(drain_bytes, CHECKER_DRAIN_BYTES_MAX))
        return None

    def _drain(self, byte_count: int):
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + CHECKER_DRAIN_SECONDS
            while byte_count > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.rfile.read1(min(byte_count, 65536))
                if not chunk:
                    break
                byte_count -= len(chunk)
        except OSError:
            pass  # the client went away: nothing left to protect

    def handle_expect_100(self):
        # Refuse a too large body before the client sends it: no "100 Continue" then.
        length = self.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > CHECKER_BODY_BYTES_MAX:
            return True
        return super().handle_expect_100()

    def _fail(self, status: int, kind: str, message: str, cause=None):
        if status >= 500:
            log.error("%d %s %s: %s%s", status, self.command, self.path[:200], message, _where(cause))
        else:
            log.warning("%d %s %s: %s", status, self.command, self.path[:200], message)
        self._send(status, _error_body(kind, message))
        return None

    def _send_json(self, status: int, value):
        self._send(status, json.dumps(value, separators=(",", ":")).encode("ascii"))

    def _send(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """Errors http.server finds itself (bad request line, unknown method): JSON too, then close."""
        self.close_connection = True
        status, kind = {501: (405, "method_not_allowed")}.get(code, (code, "bad_request"))
        text = message or self.responses.get(code, ("error",))[0]
        log.warning("%d %s", status, text)
        if getattr(self, "command", None) is None:
            self.command = ""  # the request line did not parse: there is no method yet
        # http.server assumes HTTP/0.9 (a body without a status line) until a request line parses.
        self.request_version = "HTTP/1.1"
        try:
            self._send(status, _error_body(kind, text))
        except OSError:
            pass  # the client is gone

    def log_request(self, code="-", size="-"):
        pass  # one line per error, not per request: _fail logs errors

    def log_error(self, format, *args):
        # http.server reports idle keep-alive timeouts here: routine, not an error.
        log.debug(format, *args)


def _request_target(request_line: str, parsed_path: str) -> str:
    """The target exactly as the request line sent it: http.server turns a leading "//" into "/"."""
    words = request_line.split()
    return words[1] if len(words) >= 2 else parsed_path


_BATCH = "batch"


def _route(target: str):
    """[] for "/", _BATCH for "/batch", [contract, method] for "/{contract}/{method}", None for any other path.

    The raw path, as the Rust SDK matches it: no percent-decoding, no collapsing of
    "//"; the query string is ignored. Both names are non-empty and hold no "/".
    """
    path = target.split("?", 1)[0]
    if path == "/":
        return []
    if path == "/batch":
        return _BATCH
    segments = path.split("/")
    if len(segments) != 3 or segments[0] != "" or not segments[1] or not segments[2]:
        return None
    return segments[1:]


def _where(error) -> str:
    """` (at file:line)` of the innermost frame of `error`: one log line, yet enough to find the bug."""
    if error is None or error.__traceback__ is None:
        return ""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f" (at {frame.filename}:{frame.lineno})"


def serve(contracts, host: str = "127.0.0.1", port: int = 0, **options) -> CheckerServer:
    """Serve `contracts` (a Contract or several) in a background thread; `.url`, `.close()`."""
    return CheckerServer((host, port), contracts, **options).start()


# Numbers the contract modules, so that two files named bank.py load as two modules.
_module_numbers = itertools.count()


def load_module(path, name: str | None = None):
    """Import the Python file at `path` under a module name of its own (`name`, or one made unique)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such contract file: {path}")
    name = name or f"shardspace_contract_{next(_module_numbers)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # some modules (dataclasses, pickle) look themselves up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def contracts_in(module) -> list:
    """The Contract instances at the top level of `module`."""
    return [value for value in vars(module).values() if isinstance(value, Contract)]


def contract_files(path) -> list:
    """The contract files a path names: a file itself; a contract's folder (as `shardspace contract
    new` makes) by its `<folder name>.py`, else by its Python files other than tests
    (`test_*.py`, `*_test.py`, `conftest.py`)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    own = path / f"{path.name}.py"
    if own.is_file():
        return [own]
    files = sorted(
        file
        for file in path.glob("*.py")
        if not (file.name.startswith("test_") or file.name.endswith("_test.py") or file.name == "conftest.py")
    )
    if not files:
        raise FileNotFoundError(f"no contract file in {path}: put the contract in {own.name} (tests in test_*.py)")
    return files


def load_contracts(paths) -> list:
    """The Contracts of the files (or contract folders) at `paths`; ValueError when two different
    ones share a name."""
    found = {}  # name -> (contract, path)
    for path in (file for given in paths for file in contract_files(given)):
        contracts = contracts_in(load_module(path))
        if not contracts:
            raise ValueError(f"{path} defines no Contract at its top level")
        for contract in contracts:
            other, other_path = found.setdefault(contract.name, (contract, path))
            if other is not contract:
                raise ValueError(f"two contracts are named {contract.name!r}: in {other_path} and in {path}")
    return [contract for contract, _ in found.values()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shardspace.checker", description="Serve contract checkers.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "contract_paths",
        nargs="+",
        metavar="CONTRACT_PATH",
        help="a .py file defining Contracts, or a contract's folder (its <folder name>.py)",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        contracts = load_contracts(arguments.contract_paths)
        server = CheckerServer((arguments.host, arguments.port), contracts)
    except Exception as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(server.url, flush=True)
        names = ", ".join(sorted(server.contracts))
        log.info("serving %s on %s", names, server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close()
    return 0


def _interrupt(signum, frame):
    # SIGTERM stops the server the way Ctrl-C does: out of serve_forever, through close().
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
