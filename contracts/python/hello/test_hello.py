"""The hello contract: greetings it accepts, and each rule it rejects by (docs/checkers.md §3)."""

from pathlib import Path

import pytest

from shardspace import checker_request, outputs
from shardspace.checker import load_module

hello = load_module(Path(__file__).with_name("hello.py")).hello


def greet_request(name="world", **changes) -> dict:
    request = checker_request(hello.call("greet", [], [], [name]))
    request.update(changes)
    return request


def test_greet_creates_the_greeting_and_is_accepted():
    envelope = hello.call("greet", [], [], ["Ada"])
    assert [created.value for created in outputs(envelope)] == ["hello, Ada"]
    assert hello.check_envelope(envelope) == (True, None)


@pytest.mark.parametrize("name", ["a", "Zoë 😀", "x" * 100, "é" * 99 + "😀"])
def test_names_of_1_to_100_characters_are_accepted(name):
    assert hello.check("greet", greet_request(name)) == (True, None)


@pytest.mark.parametrize(
    "request_, reason",
    [
        (greet_request(outputs=["hi, world"]), "hello, "),
        (greet_request(""), "1 to 100 characters"),
        (greet_request("x" * 101), "1 to 100 characters"),
        (greet_request(parameters=[7], outputs=["hello, 7"]), "must be a string"),
        (greet_request(parameters=["a", "b"]), "expected 1 parameters"),
        (greet_request(inputs=["x"]), "expected 0 inputs"),
        (greet_request(referenceInputs=["x"]), "expected 0 references"),
        (greet_request(outputs=[]), "expected 1 outputs"),
        (greet_request(returns=["x"]), "expected 0 returns"),
    ],
    ids=[
        "wrong_greeting",
        "empty_name",
        "long_name",
        "name_not_string",
        "two_parameters",
        "input",
        "reference",
        "no_output",
        "returns",
    ],
)
def test_rejections(request_, reason):
    success, why = hello.check("greet", request_)
    assert success is False and reason in why
