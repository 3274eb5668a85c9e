"""The `__NAME__` contract: what it accepts, and why it rejects (run: python -m pytest)."""

from pathlib import Path

import pytest

from shardspace import checker_request, outputs
from shardspace.checker import load_module

contract = load_module(Path(__file__).with_name("__NAME__.py")).contract


def test_a_note_is_written_then_amended():
    written = contract.call("write", [], [], ["a first draft"])
    assert contract.check_envelope(written) == (True, None)
    (note,) = outputs(written)
    amended = contract.call("amend", [note], [], ["the final text"])
    assert contract.check_envelope(amended) == (True, None)
    assert [created.value for created in outputs(amended)] == ["the final text"]


def write_request(text="hello", **changes) -> dict:
    request = checker_request(contract.call("write", [], [], [text]))
    request.update(changes)
    return request


@pytest.mark.parametrize(
    "request_, reason",
    [
        (write_request(""), "1 to 280 characters"),
        (write_request("x" * 281), "1 to 280 characters"),
        (write_request(outputs=["something else"]), "the text given"),
        (write_request(parameters=[7], outputs=["7"]), "must be a string"),
        (write_request(inputs=["x"]), "expected 0 inputs"),
    ],
    ids=["empty", "too_long", "not_the_text", "not_a_string", "an_input"],
)
def test_write_rejects(request_, reason):
    success, why = contract.check("write", request_)
    assert success is False and reason in why


def test_an_amendment_must_change_the_note():
    (note,) = outputs(contract.call("write", [], [], ["same"]))
    success, why = contract.check_envelope(contract.call("amend", [note], [], ["same"]))
    assert success is False and "must change" in why
