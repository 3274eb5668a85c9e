"""Every verdict of checker_requests.json and every error of checker_errors.json, as the Python SDK gives them."""

import http.client
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def load_fixture(name: str) -> list:
    return json.loads((FIXTURES / name).read_text(encoding="ascii"))


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


def _batch(connection, bodies) -> tuple:
    """POST /batch with the request bodies as they are (text), and the answer."""
    connection.request("POST", "/batch", body=("{\"requests\":[" + ",".join(bodies) + "]}").encode("utf-8"))
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_one_batch_gives_every_verdict(connection):
    cases = load_fixture("checker_requests.json")
    status, answer = _batch(connection, [json.dumps(case["request"]) for case in cases])
    assert status == 200, answer
    assert [result["success"] for result in answer["results"]] == [case["success"] for case in cases]


def _stands_alone_in_a_batch(case) -> bool:
    """An error about the request itself (not its path, method or size): a batch item gets it too."""
    segments = case["path"].split("/")
    if case["method"] != "POST" or len(segments) != 3 or case["kind"] in ("path_mismatch", "not_found"):
        return False
    try:
        body = json.loads(case["body"])
    except ValueError:
        return False
    if not isinstance(body, dict):
        return True
    return [body.get("contractID", segments[1]), body.get("methodID", segments[2])] == segments[1:]


def test_every_error_about_a_request_is_its_result_in_a_batch(connection):
    cases = [case for case in load_fixture("checker_errors.json") if _stands_alone_in_a_batch(case)]
    assert len(cases) >= 15, "the fixtures hold errors of every kind about a request"
    for case in cases:
        status, answer = _batch(connection, [case["body"]])
        if status == 400 and case["kind"] == "malformed_json":
            # Nested to the limit alone, it is nested too deep inside a batch: refused as a whole.
            assert answer["error"]["kind"] == "malformed_json", case["name"]
            continue
        assert status == 200, (case["name"], answer)
        (result,) = answer["results"]
        assert (result["status"], result["error"]["kind"]) == (case["status"], case["kind"]), case["name"]
        assert set(result["error"]) == {"kind", "message", "hint"}
