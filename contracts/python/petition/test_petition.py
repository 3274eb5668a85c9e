"""The petition contract: create, sign with tokens, tally; and each rule it rejects by (docs/checkers.md §3)."""

import json
from pathlib import Path

import pytest

from shardspace import canonical_json, checker_request, outputs
from shardspace.checker import load_module

module = load_module(Path(__file__).with_name("petition.py"))
petition = module.petition

PARAMETERS = ["p-1", "Lunch?", ["pizza", "sushi", "tacos"], 3]


def created():
    """The petition and its three tokens, as Objects."""
    envelope = petition.call("create", [], [], PARAMETERS)
    assert petition.check_envelope(envelope) == (True, None)
    return outputs(envelope)


def rejected(method: str, request: dict, reason: str) -> None:
    success, why = petition.check(method, request)
    assert success is False and reason in why, why


def create_request(uid="p-1", title="Lunch?", options=("pizza", "sushi", "tacos"), tokens=3) -> dict:
    return checker_request(petition.call("create", [], [], [uid, title, list(options), tokens]))


def test_create_sign_with_every_token_then_tally():
    current, *tokens = created()
    assert [json.loads(token.value) for token in tokens] == [{"index": i, "petition": "p-1"} for i in range(3)]
    for token, option in zip(tokens, (1, 1, 2)):
        envelope = petition.call("sign", [current, token], [], [option])
        assert petition.check_envelope(envelope) == (True, None)
        (current,) = outputs(envelope)
    envelope = petition.call("tally", [], [current])
    assert petition.check_envelope(envelope) == (True, None)
    results = envelope["transaction"]["returns"]
    assert results == [canonical_json({"results": {"pizza": 0, "sushi": 2, "tacos": 1}, "total": 3})]
    assert outputs(envelope) == []


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"options": ["yes"]}, "2 to 10 options"),
        ({"options": [str(i) for i in range(11)]}, "2 to 10 options"),
        ({"options": ["yes", "no", "yes"]}, "distinct"),
        ({"options": ["yes", ""]}, "non-empty string"),
        ({"options": ["yes", 1]}, "non-empty string"),
        ({"tokens": 0}, "from 1 to 100"),
        ({"tokens": 101}, "from 1 to 100"),
        ({"tokens": True}, "from 1 to 100"),
        ({"uid": ""}, "uid must be"),
        ({"title": ""}, "title must be"),
    ],
    ids=[
        "one_option",
        "eleven_options",
        "duplicates",
        "empty_option",
        "option_not_string",
        "zero_tokens",
        "101_tokens",
        "tokens_bool",
        "empty_uid",
        "empty_title",
    ],
)
def test_create_rejections(changes, reason):
    rejected("create", create_request(**changes), reason)


def test_create_outputs_must_be_the_petition_and_its_tokens():
    request = create_request()
    zero, *tokens = request["outputs"]
    voted = module.petition_value("p-1", "Lunch?", ["pizza", "sushi", "tacos"], [1, 0, 0])
    rejected("create", {**request, "outputs": [voted, *tokens]}, "zero tally")
    rejected("create", {**request, "outputs": [zero, *tokens[:-1]]}, "expected 4 outputs")
    rejected("create", {**request, "outputs": [zero, *reversed(tokens)]}, "must be token 0")


def test_sign_rejections():
    current, token, *_ = created()
    request = checker_request(petition.call("sign", [current, token], [], [0]))
    foreign = module.token_value("p-2", 0)
    rejected("sign", {**request, "inputs": [current.value, foreign]}, "another petition")
    rejected("sign", {**request, "parameters": [3], "outputs": [current.value]}, "index into the options")
    rejected("sign", checker_request(petition.call("sign", [current, token], [], [-1])), "index into the options")
    rejected("sign", checker_request(petition.call("sign", [current, token], [], [True])), "index into the options")
    wrong = module.petition_value("p-1", "Lunch?", ["pizza", "sushi", "tacos"], [0, 1, 0])
    rejected("sign", {**request, "outputs": [wrong]}, "one more vote")
    rejected("sign", {**request, "inputs": [current.value, '{"index":0}']}, "exactly the keys")
    rejected("sign", {**request, "inputs": [current.value]}, "expected 2 inputs")


def test_tally_rejections():
    current = created()[0]
    request = checker_request(petition.call("tally", [], [current]))
    wrong = canonical_json({"results": {"pizza": 1, "sushi": 0, "tacos": 0}, "total": 1})
    rejected("tally", {**request, "returns": [wrong]}, "results and their total")
    rejected("tally", {**request, "outputs": [current.value]}, "expected 0 outputs")
    rejected("tally", {**request, "inputs": [current.value], "referenceInputs": []}, "expected 0 inputs")
    broken = module.petition_value("p-1", "Lunch?", ["pizza", "sushi", "tacos"], [0, 0])
    rejected("tally", {**request, "referenceInputs": [broken]}, "one integer >= 0 per option")
