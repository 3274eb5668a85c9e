"""Shared pytest fixtures of the SDK tests: paths, the shared fixture files, checker servers and processes."""

import itertools
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shardspace.checker import load_contracts, serve

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "checker-sdk" / "fixtures"
CONTRACT_NAMES = ("hello", "addition", "bank", "petition", "dump")
CONTRACT_PATHS = [ROOT / "contracts" / "python" / name / f"{name}.py" for name in CONTRACT_NAMES]
DEADLINE_SECONDS = 20


def load_fixture(name: str) -> list:
    return json.loads((FIXTURES / name).read_text(encoding="ascii"))


# A test asking for one of these arguments runs once per case of the shared fixture file.
_CASE_FILES = {
    "transaction_case": "transactions.json",
    "checker_request_case": "checker_requests.json",
    "checker_error_case": "checker_errors.json",
}


def pytest_generate_tests(metafunc):
    for argument, file in _CASE_FILES.items():
        if argument in metafunc.fixturenames:
            cases = load_fixture(file)
            metafunc.parametrize(argument, cases, ids=[case["name"] for case in cases])


@pytest.fixture(scope="session")
def contract_paths() -> list:
    return list(CONTRACT_PATHS)


@pytest.fixture(scope="session")
def example_contracts() -> dict:
    """The five example contracts, by name."""
    return {contract.name: contract for contract in load_contracts(CONTRACT_PATHS)}


@pytest.fixture(scope="session")
def example_server(example_contracts):
    """One checker server on port 0 serving the five example contracts."""
    server = serve(example_contracts.values())
    yield server
    server.close()


@pytest.fixture(autouse=True)
def quiet_checker_log(caplog):
    # The server logs a line per error; tests that provoke errors would otherwise print them.
    caplog.set_level(logging.CRITICAL, logger="shardspace.checker")


# The checker processes a test started, so that a failing test's report shows what they wrote on stderr.
_CHILDREN = pytest.StashKey[list]()


class CheckerProcess:
    """A `python -m shardspace.checker` child: its URL is the first stdout line, read with a deadline.

    Its stderr goes to a file, never to a pipe: a pipe nobody reads fills up and
    blocks the child mid-log. `stderr_text()` reads what it wrote so far.
    """

    def __init__(self, stderr_path: Path, *arguments):
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.command = [sys.executable, "-m", "shardspace.checker", *map(str, arguments)]
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as stderr:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment
            )
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def first_line(self, timeout: float = DEADLINE_SECONDS):
        """The first stdout line (None if stdout closed first); fails the test after `timeout`."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the checker printed nothing within {timeout} s")
        return None if line is None else line.strip()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def checker_process(request, tmp_path):
    """A factory of checker processes, every one stopped at the end of the test, pass or fail."""
    started = request.node.stash.setdefault(_CHILDREN, [])
    numbers = itertools.count()

    def start(*arguments) -> CheckerProcess:
        child = CheckerProcess(tmp_path / f"checker-{next(numbers)}.stderr", *arguments)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test fails, add each of its checker processes' stderr to the report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for index, child in enumerate(item.stash.get(_CHILDREN, [])):
        text = child.stderr_text() if child.stderr_path.exists() else "(no stderr file)"
        report.sections.append((f"stderr of checker process {index}: {' '.join(child.command)}", text or "(empty)"))


@pytest.fixture
def wait_until():
    return _wait_until


def _wait_until(condition, timeout: float = DEADLINE_SECONDS, what: str = "the condition"):
    """Poll `condition` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
