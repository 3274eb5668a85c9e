"""`python -m shardspace.checker` as a process: first stdout line, serving, clean stop, exit 2 on bad files."""

import http.client
import json
import re
import signal
from urllib.parse import urlsplit

import pytest

from shardspace import checker_request
from shardspace.checker import load_module


def _post(url: str, path: str, request: dict):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", path, body=json.dumps(request).encode())
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_serves_the_given_contracts_and_stops_cleanly(checker_process, contract_paths, stop_signal):
    child = checker_process("--port", "0", *contract_paths)
    url = child.first_line()
    assert url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
    hello = load_module(contract_paths[0]).hello
    request = checker_request(hello.call("greet", [], [], ["process"]))
    assert _post(url, "/hello/greet", request) == (200, {"success": True})
    child.process.send_signal(stop_signal)
    assert child.process.wait(timeout=20) == 0


def test_a_missing_file_exits_2(checker_process, tmp_path):
    missing = tmp_path / "nope.py"
    child = checker_process("--port", "0", missing)
    assert child.first_line() is None
    assert child.process.wait(timeout=20) == 2
    assert str(missing) in child.stderr_text()


def test_two_contracts_with_one_name_exit_2(checker_process, contract_paths):
    hello_path = contract_paths[0]
    child = checker_process("--port", "0", hello_path, hello_path)
    assert child.first_line() is None
    assert child.process.wait(timeout=20) == 2
    assert "two contracts are named 'hello'" in child.stderr_text()


def test_a_file_without_contracts_exits_2(checker_process, tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    child = checker_process("--port", "0", empty)
    assert child.process.wait(timeout=20) == 2
    assert "defines no Contract" in child.stderr_text()


def test_a_contract_folder_is_served_by_its_own_file(checker_process, contract_paths, tmp_path):
    folder = contract_paths[0].parent  # contracts/python/hello, holding hello.py and its tests
    child = checker_process("--port", "0", folder)
    url = child.first_line()
    assert url is not None, child.stderr_text()
    hello = load_module(contract_paths[0]).hello
    assert _post(url, "/hello/greet", checker_request(hello.call("greet", [], [], ["folder"]))) == (200, {"success": True})
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(timeout=20) == 0

    empty = tmp_path / "mine"
    empty.mkdir()
    (empty / "test_mine.py").write_text("x = 1\n")
    child = checker_process("--port", "0", empty)
    assert child.process.wait(timeout=20) == 2
    assert "no contract file in" in child.stderr_text() and "mine.py" in child.stderr_text()
