"""The dump contract: every method is accepted, whatever the request (docs/checkers.md §3)."""

from pathlib import Path

from shardspace import outputs
from shardspace.checker import load_module

dump = load_module(Path(__file__).with_name("dump.py")).dump


def test_put_creates_its_private_arguments_and_is_accepted():
    envelope = dump.call("put", [], [], ["note"], "a", "b")
    assert [created.value for created in outputs(envelope)] == ["a", "b"]
    assert envelope["transaction"]["parameters"] == ["note"]
    assert dump.check_envelope(envelope) == (True, None)


def test_any_method_and_any_request_is_accepted():
    request = {
        "contractID": "dump",
        "methodID": "whatever",
        "inputs": ["not json", ""],
        "referenceInputs": ["{}"],
        "parameters": [None, {"x": [1]}],
        "returns": ["r"],
        "outputs": [],
        "dependencies": [],
    }
    assert dump.check("whatever", request) == (True, None)
    assert dump.checker_methods == ["*"]
