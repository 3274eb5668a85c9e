"""Every verdict of checker_requests.json and every error of checker_errors.json, as the Python SDK gives them."""

import http.client
import json

import pytest


@pytest.fixture
def connection(example_server):
    connection = http.client.HTTPConnection("127.0.0.1", example_server.server_port, timeout=10)
    yield connection
    connection.close()


def test_verdict_from_the_checker(example_contracts, checker_request_case):
    contract = example_contracts[checker_request_case["contract"]]
    success, reason = contract.check(checker_request_case["method"], checker_request_case["request"])
    assert success is checker_request_case["success"]
    assert (reason is None) is success


def test_verdict_over_http(connection, checker_request_case):
    path = f"/{checker_request_case['contract']}/{checker_request_case['method']}"
    connection.request("POST", path, body=json.dumps(checker_request_case["request"]).encode())
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200, answer
    assert answer["success"] is checker_request_case["success"]
    if answer["success"]:
        assert answer == {"success": True}
    else:
        assert set(answer) == {"success", "reason"} and isinstance(answer["reason"], str)


def test_error_over_http(connection, checker_error_case):
    case = checker_error_case
    connection.request(case["method"], case["path"], body=case["body"].encode("utf-8"))
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == case["status"], answer
    assert set(answer) == {"error"} and set(answer["error"]) == {"kind", "message", "hint"}
    assert answer["error"]["kind"] == case["kind"]
    if case["field"] is not None:
        assert f"`{case['field']}`" in answer["error"]["message"]
    # After an error the connection still serves.
    connection.request("GET", "/")
    assert connection.getresponse().status == 200
