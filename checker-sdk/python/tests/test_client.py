"""The API client against a fake API server: requests it sends, answers and errors it maps."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import shardspace.client
from shardspace import ApiError, ApiUnavailable, Client, TransactionError, build_transaction, canonical_json
from shardspace.client import ERROR_CLASSES, MalformedJsonError, NotFoundError, TooManyPendingError, error_from


class FakeApi(ThreadingHTTPServer):
    """Answers every request with the next (status, body, close) of `answers`; records what it got."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.answers = []
        self.received = []  # (method, path, body, client port)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_port}"

    def close(self):
        self.shutdown()
        self.thread.join()
        self.server_close()


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.server.received.append((self.command, self.path, body, self.client_address[1]))
        status, answer, close = self.server.answers.pop(0)
        payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        # Close without saying so, as a server whose idle timeout fired would.
        self.close_connection = close

    do_GET = do_POST = _answer

    def log_message(self, *arguments):
        pass


@pytest.fixture
def fake_api():
    server = FakeApi()
    yield server
    server.close()


ENVELOPE = build_transaction("dump", "put", outputs=["x"])


def test_submit_posts_the_canonical_envelope(fake_api):
    fake_api.answers = [(200, {"txId": "t", "outcome": "commit"}, False), (200, {"txId": "t"}, False)]
    with Client(fake_api.url) as client:
        assert client.submit(ENVELOPE) == {"txId": "t", "outcome": "commit"}
        assert client.submit(ENVELOPE, wait=False) == {"txId": "t"}
    (method, path, body, _), (_, second_path, _, _) = fake_api.received
    assert (method, path, body) == ("POST", "/v1/transactions", canonical_json(ENVELOPE).encode())
    assert second_path == "/v1/transactions?wait=false"


def test_reads_use_one_kept_alive_connection(fake_api):
    fake_api.answers = [(200, {"n": index}, False) for index in range(3)]
    client = Client(fake_api.url)
    assert client.transaction("ab" * 32) == {"n": 0}
    assert client.object("cd" * 32) == {"n": 1}
    assert client.cluster() == {"n": 2}
    client.close()
    paths = [path for _, path, _, _ in fake_api.received]
    assert paths == ["/v1/transactions/" + "ab" * 32, "/v1/objects/" + "cd" * 32, "/v1/cluster"]
    assert len({port for _, _, _, port in fake_api.received}) == 1


def test_a_connection_closed_while_idle_is_reopened(fake_api):
    fake_api.answers = [(200, {"n": 0}, True), (200, {"n": 1}, False)]
    client = Client(fake_api.url)
    assert client.cluster() == {"n": 0}
    assert client.cluster() == {"n": 1}
    client.close()
    assert len({port for _, _, _, port in fake_api.received}) == 2


@pytest.mark.parametrize(
    "status, kind, cls",
    [
        (429, "too_many_pending", TooManyPendingError),
        (404, "not_found", NotFoundError),
        (400, "malformed_json", MalformedJsonError),
        (503, "unavailable", ApiUnavailable),
    ],
)
def test_error_kinds_raise_their_class(fake_api, status, kind, cls):
    fake_api.answers = [(status, {"error": {"kind": kind, "message": "m", "hint": "h"}}, False)]
    with pytest.raises(cls) as error:
        Client(fake_api.url).cluster()
    assert (error.value.kind, error.value.message, error.value.hint, error.value.status) == (kind, "m", "h", status)


def test_unknown_kinds_and_non_json_errors_raise_api_error(fake_api):
    fake_api.answers = [
        (418, {"error": {"kind": "teapot", "message": "m", "hint": ""}}, False),
        (502, b"<html>", False),
    ]
    client = Client(fake_api.url)
    with pytest.raises(ApiError) as error:
        client.cluster()
    assert type(error.value) is ApiError and error.value.kind == "teapot" and error.value.status == 418
    with pytest.raises(ApiError) as error:
        client.cluster()
    assert error.value.kind == "http_502"


def test_connection_refused_is_api_unavailable_with_a_hint():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connecting is refused
        with pytest.raises(ApiUnavailable) as error:
            Client(f"http://127.0.0.1:{port}", timeout=5).cluster()
    assert isinstance(error.value, ConnectionError)
    assert "make start-all" in error.value.hint


def test_floats_are_refused_before_sending():
    with pytest.raises(ValueError, match="float_number"):
        Client("http://127.0.0.1:1").submit({"transaction": {"parameters": [1.5]}, "store": {}})


API_KINDS = [
    # core's TxError kinds, then the API's and the checkers' own.
    "malformed_json",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "bad_id",
    "bad_name",
    "float_number",
    "number_out_of_range",
    "envelope_too_large",
    "too_many_inputs",
    "too_many_references",
    "too_many_outputs",
    "too_many_dependencies",
    "dependencies_too_deep",
    "value_too_large",
    "duplicate_input",
    "input_also_reference",
    "missing_from_store",
    "unexpected_in_store",
    "path_mismatch",
    "unknown_contract",
    "unknown_method",
    "not_found",
    "method_not_allowed",
    "body_too_large",
    "checker_failed",
    "too_many_pending",
    "busy",
    "bad_attempt",
    "bad_query",
    "bad_event_id",
    "unavailable",
    "timeout",
]


def test_every_kind_has_its_own_class():
    assert sorted(ERROR_CLASSES) == sorted(API_KINDS)
    classes = [ERROR_CLASSES[kind] for kind in API_KINDS]
    assert len(set(classes)) == len(classes)
    for kind, cls in ERROR_CLASSES.items():
        assert issubclass(cls, ApiError) and cls is not ApiError and cls.kind == kind
        assert getattr(shardspace.client, cls.__name__) is cls  # importable by name
        assert cls.__name__ in shardspace.client.__all__
    assert ERROR_CLASSES["unavailable"] is ApiUnavailable and issubclass(ApiUnavailable, ConnectionError)
    assert shardspace.client.BadNameError.kind == "bad_name"
    assert shardspace.client.DependenciesTooDeepError.kind == "dependencies_too_deep"
    assert not issubclass(shardspace.client.ApiTimeoutError, TimeoutError)  # the API's deadline, not a socket's


@pytest.mark.parametrize("kind", API_KINDS)
def test_error_from_maps_each_kind_to_its_class(kind):
    body = {"error": {"kind": kind, "message": "what", "hint": "how"}}
    error = error_from(400, body)
    assert type(error) is ERROR_CLASSES[kind]
    assert (error.kind, error.message, error.hint, error.status, error.body) == (kind, "what", "how", 400, body)
    assert str(error) == f"400 {kind}: what (hint: how)"


def test_the_transaction_error_kinds_are_api_kinds():
    # What build_transaction refuses, the API refuses with the same kind: one class each on the client side.
    with pytest.raises(TransactionError) as error:
        build_transaction("bad name", "m")
    assert error.value.kind in ERROR_CLASSES


def test_wait_for_asks_until_the_transaction_is_decided(fake_api):
    tx = "ab" * 32
    fake_api.answers += [
        (404, {"error": {"kind": "not_found", "message": "no shard has a record", "hint": ""}}, False),
        (200, {"txId": tx, "outcome": "pending"}, False),
        (200, {"txId": tx, "outcome": "commit"}, False),
    ]
    with Client(fake_api.url) as client:
        assert client.wait_for(tx, timeout=10, every=0.01)["outcome"] == "commit"
    assert [path for _, path, _, _ in fake_api.received] == [f"/v1/transactions/{tx}"] * 3


def test_wait_for_gives_up_after_its_timeout(fake_api):
    fake_api.answers += [(200, {"outcome": "pending"}, False)] * 100
    with Client(fake_api.url) as client, pytest.raises(shardspace.client.ApiTimeoutError):
        client.wait_for("cd" * 32, timeout=0.05, every=0.01)


class FakeStream(ThreadingHTTPServer):
    """An event stream: each connection gets the next list of (id, data) events, then is closed."""

    daemon_threads = True

    def __init__(self, streams):
        super().__init__(("127.0.0.1", 0), FakeStreamHandler)
        self.streams = streams
        self.asked = []  # (path, Last-Event-ID) of each connection
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


class FakeStreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.asked.append((self.path, self.headers.get("Last-Event-ID")))
        events = self.server.streams.pop(0)
        if isinstance(events, int):
            body = json.dumps({"error": {"kind": "too_many_pending", "message": "64 streams", "hint": "retry"}})
            self.send_response(events)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b": keep-alive comment\n\n")
        for event_id, data in events:
            kind = "start" if data is None else "decided"
            self.wfile.write(f"event: {kind}\nid: {event_id}\ndata: {json.dumps(data or {})}\n\n".encode())
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *arguments):
        pass


def test_events_resume_from_the_last_event_after_the_stream_drops():
    # The first stream drops before its first event: the next one goes on from where it started.
    started = [("0.0", None)]
    first = [("0.0", None), ("1.0", {"txId": "a" * 64, "attempt": 1}), ("2.0", {"txId": "b" * 64, "attempt": 1})]
    second = [("2.1", {"txId": "c" * 64, "attempt": 1})]
    busy = 503
    stream = FakeStream([started, busy, first, second])
    try:
        events = Client(f"http://127.0.0.1:{stream.server_port}").events(contract="bank")
        heard = [next(events) for _ in range(3)]
        events.close()
    finally:
        stream.shutdown()
        stream.server_close()
    assert [(event["eventId"], event["txId"][0]) for event in heard] == [("1.0", "a"), ("2.0", "b"), ("2.1", "c")]
    path = "/v1/events?contract=bank"
    assert stream.asked == [(path, None), (path, "0.0"), (path, "0.0"), (path, "2.0")]


def test_transactions_asks_for_a_filtered_page(fake_api):
    fake_api.answers += [(200, {"transactions": [], "next": "3.1", "more": False}, False)]
    with Client(fake_api.url) as client:
        assert client.transactions(contract="bank", outcome="commit", after="2.1", limit=10)["next"] == "3.1"
    assert fake_api.received[0][1] == "/v1/transactions?contract=bank&outcome=commit&after=2.1&limit=10"


def test_all_objects_follows_next_until_no_more(fake_api):
    fake_api.answers += [
        (200, {"objects": [{"id": "a"}], "next": "a", "more": True}, False),
        (200, {"objects": [], "next": "c", "more": True}, False),
        (200, {"objects": [{"id": "d"}], "next": None, "more": False}, False),
    ]
    with Client(fake_api.url) as client:
        listed = [found["id"] for found in client.all_objects("bank", "active", "owner", "k y", page=1)]
    assert listed == ["a", "d"]
    query = "/v1/objects?contract=bank&status=active&field=owner&equals=k+y"
    paths = [path for _, path, _, _ in fake_api.received]
    assert paths == [f"{query}&limit=1", f"{query}&after=a&limit=1", f"{query}&after=c&limit=1"]


def test_a_field_without_its_value_is_refused_before_asking(fake_api):
    with Client(fake_api.url) as client, pytest.raises(ValueError, match="go together"):
        client.objects(field="owner")
    assert fake_api.received == []
