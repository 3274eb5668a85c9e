"""Contract: client methods build envelopes (dependencies nest and stores merge); checkers give verdicts."""

import pytest

from shardspace import CheckerFailed, Contract, Object, Reject, build_transaction, outputs, transaction_id
from shardspace.contract import RequestError


def _request(**fields) -> dict:
    request = {
        "contractID": "toy",
        "methodID": "m",
        "inputs": [],
        "referenceInputs": [],
        "parameters": [],
        "returns": [],
        "outputs": [],
        "dependencies": [],
    }
    request.update(fields)
    return request


@pytest.fixture
def toy():
    return Contract("toy")


def test_build_transaction_has_exactly_the_eight_fields_as_lists():
    envelope = build_transaction("toy", "m")
    assert envelope == {
        "transaction": {
            "contractID": "toy",
            "methodID": "m",
            "inputIDs": [],
            "referenceInputIDs": [],
            "parameters": [],
            "returns": [],
            "outputs": [],
            "dependencies": [],
        },
        "store": {},
    }


def test_method_builds_envelope_from_values_and_private_arguments(toy):
    seen = {}

    @toy.method("copy")
    def copy(inputs, reference_inputs, parameters, secret):
        seen.update(inputs=inputs, references=reference_inputs, parameters=parameters, secret=secret)
        return {"outputs": [inputs[0] + "!"], "returns": ["r"], "parameters": parameters + ["signed"]}

    source = Object("aa" * 32, "v")
    reference = Object("bb" * 32, "w")
    envelope = copy([source], [reference], [1], "key")
    assert seen == {"inputs": ["v"], "references": ["w"], "parameters": [1], "secret": "key"}
    transaction = envelope["transaction"]
    assert transaction["inputIDs"] == [source.id] and transaction["referenceInputIDs"] == [reference.id]
    assert transaction["parameters"] == [1, "signed"] and transaction["returns"] == ["r"]
    assert envelope["store"] == {source.id: "v", reference.id: "w"}
    assert toy.call("copy", [source], [reference], [1], "key") == envelope
    (created,) = outputs(envelope)
    assert created.value == "v!" and len(created.id) == 64


def test_dependencies_nest_their_transactions_and_merge_their_stores(toy):
    inner = build_transaction("other", "make", [Object("cc" * 32, "old")], outputs=["new"])

    @toy.method("wrap")
    def wrap(inputs, reference_inputs, parameters):
        return {"outputs": ["wrapped"], "dependencies": [inner]}

    envelope = wrap([Object("dd" * 32, "mine")], [], [])
    assert envelope["transaction"]["dependencies"] == [inner["transaction"]]
    assert envelope["store"] == {"cc" * 32: "old", "dd" * 32: "mine"}
    assert transaction_id(envelope["transaction"]["dependencies"][0]) == transaction_id(inner["transaction"])


def test_one_id_with_two_values_is_refused():
    inner = build_transaction("other", "m", [Object("cc" * 32, "one")])
    with pytest.raises(ValueError, match="two different values"):
        build_transaction("toy", "m", [Object("cc" * 32, "two")], dependencies=[inner])


def test_floats_are_refused_when_building(toy):
    with pytest.raises(ValueError, match=r"float_number: transaction\.parameters\[0\]"):
        build_transaction("toy", "m", parameters=[0.5])


def test_method_result_must_have_outputs_and_known_keys(toy):
    @toy.method("bad")
    def bad(inputs, reference_inputs, parameters):
        return {"output": []}

    with pytest.raises(TypeError):
        bad([], [], [])


@pytest.mark.parametrize(
    "answer, verdict",
    [
        (lambda: True, (True, None)),
        (lambda: False, (False, "rejected by toy.m")),
    ],
)
def test_checker_verdicts(toy, answer, verdict):
    toy.checker("m")(lambda *request: answer())
    assert toy.check("m", _request()) == verdict


def test_reject_gives_its_reason(toy):
    @toy.checker("m")
    def reject(*request):
        raise Reject("no way")

    assert toy.check("m", _request()) == (False, "no way")


@pytest.mark.parametrize("result", [None, 1, "yes", [True]])
def test_a_non_bool_answer_is_a_contract_bug(toy, result):
    toy.checker("m")(lambda *request: result)
    with pytest.raises(CheckerFailed, match="not True or False"):
        toy.check("m", _request())


def test_a_raising_checker_fails(toy):
    toy.checker("m")(lambda *request: 1 / 0)
    with pytest.raises(CheckerFailed, match="ZeroDivisionError"):
        toy.check("m", _request())


def test_counts_are_required_before_the_checker_runs(toy):
    toy.checker("m", inputs=1, outputs=0)(lambda *request: True)
    assert toy.check("m", _request(inputs=["x"])) == (True, None)
    assert toy.check("m", _request()) == (False, "expected 1 inputs, got 0")


def test_wildcard_answers_methods_without_their_own_checker(toy):
    toy.checker("*")(lambda *request: True)
    toy.checker("strict")(lambda *request: False)
    assert toy.check("anything", _request()) == (True, None)
    assert toy.check("strict", _request())[0] is False
    assert toy.checker_methods == ["*", "strict"]


def test_checker_receives_the_fields_in_order(toy):
    seen = []
    toy.checker("m")(lambda *arguments: seen.append(arguments) or True)
    dependency = _request(contractID="dep")
    toy.check(
        "m",
        _request(
            inputs=["i"], referenceInputs=["r"], parameters=[1], outputs=["o"], returns=["x"], dependencies=[dependency]
        ),
    )
    assert seen == [(["i"], ["r"], [1], ["o"], ["x"], [dependency])]


def test_unknown_method_and_malformed_request(toy):
    with pytest.raises(LookupError):
        toy.check("m", _request())
    toy.checker("m")(lambda *request: True)
    with pytest.raises(RequestError) as error:
        toy.check("m", _request(dependencies=[{"contractID": "x"}]))
    assert (error.value.kind, error.value.field) == ("missing_field", "dependencies[0].methodID")


def test_a_method_or_checker_is_declared_once(toy):
    toy.checker("m")(lambda *request: True)
    with pytest.raises(ValueError, match="already has a checker"):
        toy.checker("m")(lambda *request: True)
    toy.checker("*")(lambda *request: True)
    with pytest.raises(ValueError, match="already has a checker"):
        toy.checker("*")(lambda *request: True)
    toy.method("m")(lambda inputs, references, parameters: {"outputs": []})
    with pytest.raises(ValueError, match="already has a client method"):
        toy.method("m")(lambda inputs, references, parameters: {"outputs": []})


GOOD_NAMES = ["a", "Bank", "0", "create_account", "v1.2-beta", "x" * 64]
BAD_NAMES = ["", "has/slash", "_private", ".hidden", "-dash", "has space", "café", "x" * 65, "a\n", "%41", None, 7]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_names_follow_the_ledger_rule(name):
    contract = Contract(name)
    contract.method(name)(lambda inputs, references, parameters: {"outputs": []})
    contract.checker(name)(lambda *request: True)
    assert contract.call(name)["transaction"]["contractID"] == name


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_names_outside_the_ledger_rule_are_refused(toy, name):
    with pytest.raises(ValueError, match="A-Z a-z 0-9"):
        Contract(name)
    with pytest.raises(ValueError, match="A-Z a-z 0-9"):
        toy.method(name)
    with pytest.raises(ValueError, match="A-Z a-z 0-9"):
        toy.checker(name)


def test_only_checkers_take_the_wildcard(toy):
    toy.checker("*")(lambda *request: True)
    with pytest.raises(ValueError):
        toy.method("*")
    with pytest.raises(ValueError):
        Contract("*")


@pytest.mark.parametrize(
    "parameters, kind, field",
    [
        ([1.5], "float_number", "parameters[0]"),
        ([{"x": -0.0}], "float_number", "parameters[0].x"),
        ([2**64], "number_out_of_range", "parameters[0]"),
        ([1e19], "number_out_of_range", "parameters[0]"),
    ],
)
def test_check_refuses_numbers_that_are_not_64_bit_integers(toy, parameters, kind, field):
    toy.checker("m")(lambda *request: True)
    with pytest.raises(RequestError) as error:
        toy.check("m", _request(parameters=parameters))
    assert (error.value.kind, error.value.field) == (kind, field)
    with pytest.raises(RequestError) as error:
        toy.check("m", _request(dependencies=[_request(parameters=parameters)]))
    assert (error.value.kind, error.value.field) == (kind, "dependencies[0]." + field)


def test_a_dependency_comes_without_dependencies_as_chainspace_inlines_it_and_is_read_either_way():
    from shardspace import checker_request
    from shardspace.contract import validate_request

    inner = build_transaction("inner", "make", outputs=["x"])
    outer = build_transaction("outer", "use", outputs=["y"], dependencies=[inner])
    request = checker_request(outer)
    assert request["dependencies"][0].get("dependencies") is None, "sent as Chainspace's transaction_to_solution does"
    assert checker_request(inner)["dependencies"] == [], "the top request always has the key"
    validate_request(request)
    assert request["dependencies"][0]["dependencies"] == [], "read as a dependency without dependencies"
    with_key = checker_request(outer)
    with_key["dependencies"][0]["dependencies"] = []
    validate_request(with_key)
    del with_key["dependencies"]
    with pytest.raises(RequestError) as refused:
        validate_request(with_key)
    assert refused.value.kind == "missing_field"
