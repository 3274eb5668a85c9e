"""The `petition` contract (docs/checkers.md §3): a petition, tokens to sign it once each, a tally.

A petition is {"options": [str], "tally": [int], "title": str, "uid": str}; a
token is {"index": int, "petition": uid}. `create` makes the petition and its
tokens; `sign` consumes the petition and one of its tokens and adds a vote;
`tally` reads the petition (a reference) and returns the results.
"""

import json

from shardspace import INT64_MAX, Contract, canonical_json, is_int, load_canonical, require, require_keys

OPTIONS_MIN = 2
OPTIONS_MAX = 10
TOKENS_MAX = 100
PETITION_KEYS = ("options", "tally", "title", "uid")
TOKEN_KEYS = ("index", "petition")

petition = Contract("petition")


def petition_value(uid: str, title: str, options: list, tally: list) -> str:
    return canonical_json({"options": options, "tally": tally, "title": title, "uid": uid})


def token_value(uid: str, index: int) -> str:
    return canonical_json({"index": index, "petition": uid})


def results_value(parsed_petition: dict) -> str:
    """The return of `tally`: each option's count and the total."""
    counts = dict(zip(parsed_petition["options"], parsed_petition["tally"]))
    return canonical_json({"results": counts, "total": sum(parsed_petition["tally"])})


@petition.method("create")
def create(inputs, reference_inputs, parameters):
    uid, title, options, tokens = parameters
    created = petition_value(uid, title, options, [0] * len(options))
    return {"outputs": [created] + [token_value(uid, index) for index in range(tokens)]}


@petition.method("sign")
def sign(inputs, reference_inputs, parameters):
    petition_text, _token = inputs
    (option,) = parameters
    signed = json.loads(petition_text)
    signed["tally"][option] += 1
    return {"outputs": [petition_value(signed["uid"], signed["title"], signed["options"], signed["tally"])]}


@petition.method("tally")
def tally(inputs, reference_inputs, parameters):
    (petition_text,) = reference_inputs
    return {"outputs": [], "returns": [results_value(json.loads(petition_text))]}


@petition.checker("create", inputs=0, reference_inputs=0, parameters=4, returns=0)
def check_create(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    uid, title, options, tokens = parameters
    _require_header(uid, title, options, "the parameters")
    require(is_int(tokens, 1, TOKENS_MAX), f"tokens must be an integer from 1 to {TOKENS_MAX}")
    require(
        len(outputs) == 1 + tokens, f"expected {1 + tokens} outputs (the petition and its tokens), got {len(outputs)}"
    )
    require(
        outputs[0] == petition_value(uid, title, options, [0] * len(options)),
        "output 0 must be the petition with a zero tally",
    )
    for index in range(tokens):
        require(outputs[1 + index] == token_value(uid, index), f"output {1 + index} must be token {index}")
    return True


@petition.checker("sign", inputs=2, reference_inputs=0, parameters=1, outputs=1, returns=0)
def check_sign(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    signed = parse_petition(inputs[0])
    token = parse_token(inputs[1])
    require(token["petition"] == signed["uid"], "the token is for another petition")
    (option,) = parameters
    require(is_int(option, 0, len(signed["options"]) - 1), "the option must be an index into the options")
    tally = list(signed["tally"])
    require(tally[option] < INT64_MAX, "the tally would overflow 2^63-1")
    tally[option] += 1
    require(
        outputs[0] == petition_value(signed["uid"], signed["title"], signed["options"], tally),
        "the output must be the petition with one more vote for the option",
    )
    return True


@petition.checker("tally", inputs=0, reference_inputs=1, parameters=0, outputs=0, returns=1)
def check_tally(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    counted = parse_petition(reference_inputs[0])
    require(returns[0] == results_value(counted), "the return must be the petition's results and their total")
    return True


def parse_petition(value: str) -> dict:
    """The petition in `value`, or Reject."""
    parsed = load_canonical(value, "the petition")
    require_keys(parsed, PETITION_KEYS, "the petition")
    _require_header(parsed["uid"], parsed["title"], parsed["options"], "the petition")
    tally = parsed["tally"]
    require(
        isinstance(tally, list) and len(tally) == len(parsed["options"]) and all(is_int(count, 0) for count in tally),
        "the petition's tally must be one integer >= 0 per option",
    )
    # The total is returned by `tally`: keep it within what both SDKs can print.
    require(sum(tally) <= INT64_MAX, "the petition's total would overflow 2^63-1")
    return parsed


def parse_token(value: str) -> dict:
    """The token in `value`, or Reject."""
    parsed = load_canonical(value, "the token")
    require_keys(parsed, TOKEN_KEYS, "the token")
    require(is_int(parsed["index"], 0), "the token's index must be an integer >= 0")
    require(isinstance(parsed["petition"], str), "the token's petition must be a string")
    return parsed


def _require_header(uid, title, options, what: str) -> None:
    require(isinstance(uid, str) and uid, f"{what}: the uid must be a non-empty string")
    require(isinstance(title, str) and title, f"{what}: the title must be a non-empty string")
    require(
        isinstance(options, list) and OPTIONS_MIN <= len(options) <= OPTIONS_MAX,
        f"{what}: there must be {OPTIONS_MIN} to {OPTIONS_MAX} options",
    )
    require(
        all(isinstance(option, str) and option for option in options), f"{what}: each option must be a non-empty string"
    )
    require(len(set(options)) == len(options), f"{what}: the options must be distinct")
