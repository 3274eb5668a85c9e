"""The addition contract: counting from "0", and each rule it rejects by (docs/checkers.md §3)."""

from pathlib import Path

import pytest

from shardspace import INT64_MAX, INT64_MIN, checker_request, outputs
from shardspace.checker import load_module

addition = load_module(Path(__file__).with_name("addition.py")).addition


def increment_request(before: str, after: str) -> dict:
    request = checker_request(addition.call("increment", [("ab" * 32, "0")]))
    request.update(inputs=[before], outputs=[after])
    return request


def test_init_then_increments_count_up():
    envelope = addition.call("init")
    assert addition.check_envelope(envelope) == (True, None)
    counter = outputs(envelope)[0]
    for expected in ("1", "2", "3"):
        envelope = addition.call("increment", [counter])
        assert addition.check_envelope(envelope) == (True, None)
        counter = outputs(envelope)[0]
        assert counter.value == expected


@pytest.mark.parametrize(
    "before, after",
    [
        ("41", "42"),
        ("-1", "0"),
        ("-5", "-4"),
        (str(INT64_MIN), str(INT64_MIN + 1)),
        (str(INT64_MAX - 1), str(INT64_MAX)),
    ],
)
def test_increments_in_range_are_accepted(before, after):
    assert addition.check("increment", increment_request(before, after)) == (True, None)


def test_init_rejections():
    request = checker_request(addition.call("init"))
    assert "'0'" in addition.check("init", {**request, "outputs": ["1"]})[1]
    assert "expected 0 inputs" in addition.check("init", {**request, "inputs": ["0"]})[1]
    assert "expected 0 parameters" in addition.check("init", {**request, "parameters": [1]})[1]


@pytest.mark.parametrize(
    "before, after, reason",
    [
        ("41", "43", "plus one"),
        ("41", "042", "plus one"),
        ("abc", "1", "not a decimal integer"),
        ("007", "8", "not a decimal integer"),
        ("+1", "2", "not a decimal integer"),
        ("-0", "1", "not a decimal integer"),
        ("-00", "1", "not a decimal integer"),
        ("1.0", "2", "not a decimal integer"),
        ("41\n", "42", "not a decimal integer"),
        ("٤١", "42", "not a decimal integer"),
        ("1" * 30, "2", "not a decimal integer"),
        (str(INT64_MAX), str(INT64_MAX + 1), "overflow"),
        (str(INT64_MAX + 1), str(INT64_MAX + 2), "outside the signed 64-bit range"),
        (str(INT64_MIN - 1), str(INT64_MIN), "outside the signed 64-bit range"),
    ],
)
def test_increment_rejections(before, after, reason):
    success, why = addition.check("increment", increment_request(before, after))
    assert success is False and reason in why


def test_increment_counts():
    request = increment_request("1", "2")
    assert "expected 1 inputs" in addition.check("increment", {**request, "inputs": []})[1]
    assert "expected 1 outputs" in addition.check("increment", {**request, "outputs": ["2", "2"]})[1]
