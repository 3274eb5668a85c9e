"""The hello contract: greetings it accepts, and each rule it rejects by (docs/checkers.md §3)."""

from pathlib import Path

import pytest

from shardspace import INT64_MAX, checker_request, outputs
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


# -- greet_counted: a greeting counted by addition.increment, its one dependency ------------------

addition = load_module(Path(__file__).parents[1] / "addition" / "addition.py").addition
COUNTER = ("ab" * 32, "0")  # a counter holding 0; its id does not matter to the checkers


def increment(counter=COUNTER) -> dict:
    return addition.call("increment", [counter])


def counted_request(name="ada", **changes) -> dict:
    request = checker_request(hello.call("greet_counted", [], [], [name], increment()))
    request.update(changes)
    return request


def dependency(**changes) -> dict:
    """The checker request of the counting increment, with `changes`."""
    return {**counted_request()["dependencies"][0], **changes}


def test_greet_counted_greets_the_visitor_the_increment_counts_and_is_accepted():
    counted = increment(("cd" * 32, "41"))
    envelope = hello.call("greet_counted", [], [], ["Ada"], counted)
    assert [created.value for created in outputs(envelope)] == ["hello, Ada: visitor 42"]
    assert envelope["transaction"]["dependencies"] == [counted["transaction"]]
    assert envelope["store"] == counted["store"]
    assert hello.check_envelope(envelope) == (True, None)
    assert addition.check_envelope(counted) == (True, None)


def test_greet_counted_leaves_the_arithmetic_to_the_increments_own_checker():
    # The node runs addition.increment's checker first, and it rejects this; hello reads the count only.
    lying = increment()
    lying["transaction"]["outputs"] = ["3"]
    envelope = hello.call("greet_counted", [], [], ["ada"], lying)
    assert outputs(envelope)[0].value == "hello, ada: visitor 3"
    assert hello.check_envelope(envelope) == (True, None)
    assert addition.check_envelope(lying)[0] is False


@pytest.mark.parametrize("call", [hello.call("greet", [], [], ["x"]), addition.call("init"), {"store": {}}, None])
def test_the_greet_counted_client_takes_an_addition_increment_only(call):
    with pytest.raises(ValueError, match="addition.increment"):
        hello.call("greet_counted", [], [], ["ada"], call)


@pytest.mark.parametrize(
    "request_, reason",
    [
        (counted_request(dependencies=[]), "expected 1 dependencies, got 0"),
        (counted_request(dependencies=[dependency(), dependency()]), "expected 1 dependencies, got 2"),
        (counted_request(dependencies=[dependency(contractID="dump")]), "addition.increment, not dump.increment"),
        (counted_request(dependencies=[dependency(methodID="init")]), "addition.increment, not addition.init"),
        (counted_request(dependencies=[dependency(outputs=[])]), "create 1 counter, not 0"),
        (counted_request(dependencies=[dependency(outputs=["1", "1"])]), "create 1 counter, not 2"),
        (counted_request(dependencies=[dependency(outputs=["one"])], outputs=["hello, ada: visitor one"]), "decimal"),
        (counted_request(dependencies=[dependency(outputs=["01"])], outputs=["hello, ada: visitor 01"]), "decimal"),
        (counted_request(dependencies=[dependency(outputs=["-0"])], outputs=["hello, ada: visitor -0"]), "decimal"),
        (counted_request(dependencies=[dependency(outputs=[str(INT64_MAX + 1)])]), "decimal"),
        (counted_request(outputs=["hello, ada: visitor 7"]), "visitor"),
        (counted_request(outputs=["hello, ada"]), "visitor"),
        (counted_request(outputs=["hello, bob: visitor 1"]), "visitor"),
        (counted_request(""), "1 to 100 characters"),
        (counted_request("x" * 101), "1 to 100 characters"),
        (counted_request(parameters=[7], outputs=["hello, 7: visitor 1"]), "must be a string"),
        (counted_request(inputs=["0"]), "expected 0 inputs"),
        (counted_request(referenceInputs=["0"]), "expected 0 references"),
        (counted_request(outputs=[]), "expected 1 outputs"),
        (counted_request(returns=["1"]), "expected 0 returns"),
    ],
    ids=[
        "no_dependency",
        "two_dependencies",
        "dependency_of_another_contract",
        "dependency_of_another_method",
        "dependency_without_output",
        "dependency_with_two_outputs",
        "count_not_an_integer",
        "count_leading_zero",
        "count_negative_zero",
        "count_out_of_range",
        "wrong_number",
        "no_count",
        "wrong_name",
        "empty_name",
        "long_name",
        "name_not_string",
        "input",
        "reference",
        "no_output",
        "returns",
    ],
)
def test_greet_counted_rejections(request_, reason):
    success, why = hello.check("greet_counted", request_)
    assert success is False and reason in why
