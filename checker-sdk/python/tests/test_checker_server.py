"""The checker server's HTTP behaviour beyond the fixtures: limits, keep-alive, failures it survives."""

import http.client
import json
import socket

import pytest

from shardspace import Contract, Reject
from shardspace.checker import CHECKER_BODY_BYTES_MAX, serve

GREET = {
    "contractID": "hello",
    "methodID": "greet",
    "inputs": [],
    "referenceInputs": [],
    "parameters": ["world"],
    "returns": [],
    "outputs": ["hello, world"],
    "dependencies": [],
}


def _connect(server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)


def _exchange(connection, method, path, body=None, headers=None):
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    return response, (json.loads(payload) if payload else None)


def _raw(server, data: bytes) -> bytes:
    """Send raw bytes and read everything until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as raw:
        raw.sendall(data)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    return received


@pytest.fixture
def toy_server():
    toy = Contract("toy")
    toy.checker("boom")(lambda *request: 1 / 0)
    toy.checker("maybe")(lambda *request: "yes")
    toy.checker("ok")(lambda *request: True)

    @toy.checker("no")
    def no(*request):
        raise Reject("because")

    server = serve(toy)
    yield server
    server.close()


def _toy_request(method: str) -> bytes:
    return json.dumps({**GREET, "contractID": "toy", "methodID": method}).encode()


def test_get_root_lists_contracts_and_methods(example_server):
    connection = _connect(example_server)
    response, answer = _exchange(connection, "GET", "/")
    assert response.status == 200
    assert answer == {
        "contracts": {
            "addition": ["increment", "init"],
            "bank": ["create_account", "transfer"],
            "dump": ["*"],
            "hello": ["greet", "greet_counted"],
            "petition": ["create", "sign", "tally"],
        }
    }


def test_keep_alive_serves_many_requests_on_one_connection(example_server):
    connection = _connect(example_server)
    sockets = set()
    for _ in range(5):
        response, answer = _exchange(connection, "POST", "/hello/greet", json.dumps(GREET).encode())
        assert (response.status, answer) == (200, {"success": True})
        assert not response.will_close
        sockets.add(id(connection.sock))
    assert len(sockets) == 1
    connection.close()


def test_raising_checker_is_500_and_the_next_request_is_served(toy_server):
    connection = _connect(toy_server)
    response, answer = _exchange(connection, "POST", "/toy/boom", _toy_request("boom"))
    assert response.status == 500 and answer["error"]["kind"] == "checker_failed"
    assert "ZeroDivisionError" in answer["error"]["message"]
    response, answer = _exchange(connection, "POST", "/toy/maybe", _toy_request("maybe"))
    assert response.status == 500 and answer["error"]["kind"] == "checker_failed"
    response, answer = _exchange(connection, "POST", "/toy/ok", _toy_request("ok"))
    assert (response.status, answer) == (200, {"success": True})
    response, answer = _exchange(connection, "POST", "/toy/no", _toy_request("no"))
    assert (response.status, answer) == (200, {"success": False, "reason": "because"})
    connection.close()


def test_body_over_the_limit_is_413_then_the_server_still_serves(example_server):
    connection = _connect(example_server)
    response, answer = _exchange(connection, "POST", "/hello/greet", b"x" * (CHECKER_BODY_BYTES_MAX + 1))
    assert response.status == 413 and answer["error"]["kind"] == "body_too_large"
    assert response.getheader("Connection") == "close"
    connection.close()
    connection = _connect(example_server)
    response, answer = _exchange(connection, "POST", "/hello/greet", json.dumps(GREET).encode())
    assert (response.status, answer) == (200, {"success": True})
    connection.close()


def test_body_at_the_limit_is_read(example_server):
    body = json.dumps(GREET).encode()
    body += b" " * (CHECKER_BODY_BYTES_MAX - len(body))
    response, answer = _exchange(_connect(example_server), "POST", "/hello/greet", body)
    assert (response.status, answer) == (200, {"success": True})


@pytest.mark.parametrize(
    "headers",
    [b"", b"Transfer-Encoding: chunked\r\n", b"Content-Length: ten\r\n"],
    ids=["no_length", "chunked", "bad_length"],
)
def test_body_without_a_length_is_411_and_the_connection_closes(example_server, headers):
    received = _raw(
        example_server, b"POST /hello/greet HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411 ")
    assert b"\r\nConnection: close" in head
    assert json.loads(body)["error"]["kind"] == "length_required"


def test_expect_100_continue_is_refused_for_a_too_large_body(example_server):
    length = CHECKER_BODY_BYTES_MAX + 1
    request = f"POST /hello/greet HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    received = _raw(example_server, request.encode())
    assert received.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b"[" * 100_000, b'{"a": ' * 5000],
    ids=["not_utf8", "deep_array", "deep_object"],
)
def test_bad_bodies_are_malformed_json_and_never_crash(example_server, body):
    connection = _connect(example_server)
    response, answer = _exchange(connection, "POST", "/hello/greet", body)
    assert response.status == 400 and answer["error"]["kind"] == "malformed_json"
    response, _ = _exchange(connection, "GET", "/")
    assert response.status == 200


def test_deeply_nested_dependencies_get_an_answer(example_server):
    # 600 levels: deeper than Python's recursion limit, so built as text.
    left, right = json.dumps({**GREET, "dependencies": ["HOLE"]}).split('"HOLE"')
    body = left * 600 + json.dumps(GREET) + right * 600
    connection = _connect(example_server)
    response, answer = _exchange(connection, "POST", "/hello/greet", body.encode())
    assert (response.status, answer["error"]["kind"]) == (400, "malformed_json")
    response, _ = _exchange(connection, "GET", "/")
    assert response.status == 200


def test_unknown_http_method_and_garbage_get_json_errors(example_server):
    received = _raw(example_server, b"BREW /hello/greet HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ") and json.loads(body)["error"]["kind"] == "method_not_allowed"
    received = _raw(example_server, b"garbage\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["error"]["kind"] == "bad_request"


def test_head_gets_405_without_a_body(example_server):
    response, answer = _exchange(_connect(example_server), "HEAD", "/")
    assert response.status == 405 and answer is None


def test_too_many_connections_are_refused_with_503(example_contracts, wait_until):
    server = serve(example_contracts.values(), connections_max=1)
    try:
        first = _connect(server)
        assert _exchange(first, "GET", "/")[0].status == 200  # the one allowed connection, kept alive
        received = _raw(server, b"")
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and json.loads(body)["error"]["kind"] == "too_many_connections"
        first.close()
        wait_until(lambda: not server._connections, what="the first connection to close")
        assert _exchange(_connect(server), "GET", "/")[0].status == 200
    finally:
        server.close()


def test_close_releases_the_port(example_contracts):
    server = serve(example_contracts["hello"])
    port = server.server_port
    assert server.url == f"http://127.0.0.1:{port}"
    idle = _connect(server)
    _exchange(idle, "GET", "/")
    server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_two_contracts_with_one_name_are_refused():
    with pytest.raises(ValueError, match="named 'twin'"):
        serve([Contract("twin"), Contract("twin")])


# -- the raw path (docs/checkers.md §2) -------------------------------------------------------------


@pytest.mark.parametrize(
    "path, status, kind",
    [
        ("//hello/greet", 404, "not_found"),
        ("/hello//greet", 404, "not_found"),
        ("/hello/greet/", 404, "not_found"),
        ("/hello/", 404, "not_found"),
        ("//", 404, "not_found"),
        ("/hello%2Fgreet", 404, "not_found"),
        ("/hello/gr%65et", 404, "unknown_method"),
        ("/h%65llo/greet", 404, "unknown_contract"),
        ("/-bad/greet", 404, "unknown_contract"),
        ("/hello/greet?", 200, None),
        ("/hello/greet?x=1&y=/a/b", 200, None),
    ],
)
def test_the_path_is_matched_raw(example_server, path, status, kind):
    response, answer = _exchange(_connect(example_server), "POST", path, json.dumps(GREET).encode())
    assert response.status == status, answer
    if kind is not None:
        assert answer["error"]["kind"] == kind
    else:
        assert answer == {"success": True}


def test_a_query_string_on_root_still_lists(example_server):
    response, answer = _exchange(_connect(example_server), "GET", "/?verbose=1")
    assert response.status == 200 and "contracts" in answer


# -- bodies read as serde_json reads them, numbers checked after the fields --------------------------


def _greet_with(**fields) -> bytes:
    return json.dumps({**GREET, **fields}).encode()


def _dump_body(parameters_text: str) -> bytes:
    body = json.dumps({**GREET, "contractID": "dump", "methodID": "put", "parameters": ["SLOT"], "outputs": []})
    return body.replace('["SLOT"]', parameters_text).encode()


def _error_of(server, path: str, body: bytes):
    response, answer = _exchange(_connect(server), "POST", path, body)
    return response.status, answer["error"]["kind"] if response.status != 200 else answer, answer


@pytest.mark.parametrize(
    "parameters",
    ["[NaN]", "[-Infinity]", "[1e400]", "[-1E400]", "[" + "9" * 400 + "]", "[" + "[" * 126 + "]" * 126 + "]"],
    ids=["nan", "minus_infinity", "float_overflow", "negative_float_overflow", "integer_overflow", "nested_128"],
)
def test_what_serde_json_refuses_is_malformed_json(example_server, parameters):
    status, kind, _ = _error_of(example_server, "/dump/put", _dump_body(parameters))
    assert (status, kind) == (400, "malformed_json")


def test_127_levels_are_accepted(example_server):
    body = _dump_body("[" + "[" * 125 + "]" * 125 + "]")
    assert _error_of(example_server, "/dump/put", body)[:2] == (200, {"success": True})


@pytest.mark.parametrize(
    "parameters, kind, field",
    [
        ("[1.5]", "float_number", "parameters[0]"),
        ('[{"x": 1.0}]', "float_number", "parameters[0].x"),
        ("[1, -0]", "float_number", "parameters[1]"),
        ("[-0.0]", "float_number", "parameters[0]"),
        ("[1e3]", "float_number", "parameters[0]"),
        ("[18446744073709551616]", "number_out_of_range", "parameters[0]"),
        ("[-9223372036854775809]", "number_out_of_range", "parameters[0]"),
        ("[1e19]", "number_out_of_range", "parameters[0]"),
        ("[[" + "9" * 300 + "]]", "number_out_of_range", "parameters[0][0]"),
    ],
)
def test_numbers_in_parameters_must_be_64_bit_integers(example_server, parameters, kind, field):
    status, got, answer = _error_of(example_server, "/dump/put", _dump_body(parameters))
    assert (status, got) == (400, kind)
    assert f"`{field}`" in answer["error"]["message"]


def test_integer_bounds_and_numbers_outside_parameters_are_fine(example_server):
    body = _dump_body("[-9223372036854775808, 18446744073709551615]")
    assert _error_of(example_server, "/dump/put", body)[:2] == (200, {"success": True})
    # Extra fields are ignored, numbers in them included (NaN would still be malformed JSON).
    body = json.dumps({**GREET, "contractID": "dump", "methodID": "put", "extra": [1.5, 2**70]}).encode()
    assert _error_of(example_server, "/dump/put", body)[:2] == (200, {"success": True})


def test_numbers_in_a_dependency_name_its_path(example_server):
    dependency = {**GREET, "parameters": ["world", {"n": 2.5}]}
    body = _greet_with(dependencies=[GREET, dependency])
    status, kind, answer = _error_of(example_server, "/hello/greet", body)
    assert (status, kind) == (400, "float_number")
    assert "`dependencies[1].parameters[1].n`" in answer["error"]["message"]


def test_check_order_fields_then_numbers_then_path_mismatch(example_server):
    # A missing field anywhere wins over a float; a float wins over a body sent to the wrong path.
    body = _greet_with(parameters=[1.5], dependencies=[{"contractID": "hello"}])
    assert _error_of(example_server, "/hello/greet", body)[1] == "missing_field"
    body = _greet_with(methodID="other", parameters=[1.5])
    assert _error_of(example_server, "/hello/greet", body)[1] == "float_number"
    # The path is looked up before the body is read: unknown method beats malformed JSON.
    assert _error_of(example_server, "/hello/nope", b"{NaN")[1] == "unknown_method"


def _batch(server, body: bytes, method: str = "POST"):
    return _exchange(_connect(server), method, "/batch", body)


def test_a_batch_answers_each_request_as_its_own_call_would(toy_server):
    requests = [_toy_request(method).decode() for method in ("ok", "boom", "no", "maybe")]
    requests.append(json.dumps({**GREET, "contractID": "nope"}))
    response, answer = _batch(toy_server, ("{\"requests\": [" + ",".join(requests) + "]}").encode())
    assert response.status == 200, answer
    ok, boom, no, maybe, nope = answer["results"]
    assert (ok, no) == ({"success": True}, {"success": False, "reason": "because"})
    assert (boom["status"], boom["error"]["kind"]) == (500, "checker_failed")
    assert "ZeroDivisionError" in boom["error"]["message"]
    assert (maybe["status"], maybe["error"]["kind"]) == (500, "checker_failed")
    assert (nope["status"], nope["error"]["kind"]) == (404, "unknown_contract")


@pytest.mark.parametrize(
    "body, status, kind",
    [
        (b"{\"requests\": [", 400, "malformed_json"),
        (b"[]", 400, "malformed_json"),
        (b"{}", 400, "missing_field"),
        (b"{\"requests\": {}}", 400, "wrong_type"),
        (("{\"requests\": [" + ",".join(["{}"] * 257) + "]}").encode(), 413, "batch_too_large"),
    ],
    ids=["not_json", "not_an_object", "no_requests", "requests_not_a_list", "too_many"],
)
def test_a_bad_batch_is_refused_whole_and_the_server_still_serves(example_server, body, status, kind):
    response, answer = _batch(example_server, body)
    assert (response.status, answer["error"]["kind"]) == (status, kind)
    response, answer = _batch(example_server, ("{\"requests\": [" + json.dumps(GREET) + "]}").encode())
    assert (response.status, answer) == (200, {"results": [{"success": True}]})


def test_batches_are_posted(example_server):
    response, answer = _batch(example_server, None, method="GET")
    assert (response.status, answer["error"]["kind"]) == (405, "method_not_allowed")
    response, answer = _batch(example_server, b"{\"requests\": []}")
    assert (response.status, answer) == (200, {"results": []})
