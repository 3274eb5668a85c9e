"""validate_envelope and build_transaction refuse what the ledger refuses, one test per error kind (core's TxError)."""

import contextlib
import hashlib
import json
import re
from pathlib import Path

import pytest

from shardspace import (
    Object,
    TransactionError,
    build_transaction,
    checker_request,
    concerned_shards,
    is_lower_hex,
    is_name,
    output_ids,
    outputs,
    validate_envelope,
)
from shapes import blank_transaction
from shardspace import limits
from shardspace.limits import (
    DEPENDENCIES_MAX,
    DEPENDENCY_DEPTH_MAX,
    ENVELOPE_BYTES_MAX,
    INPUTS_MAX,
    JSON_NESTING_MAX,
    NAME_CHARS_MAX,
    OUTPUTS_MAX,
    REFERENCES_MAX,
    VALUE_BYTES_MAX,
)

ROOT = Path(__file__).resolve().parents[3]


def object_named(label: str, value: str = "v") -> Object:
    return Object(hashlib.sha256(label.encode()).hexdigest(), value)


def objects(count: int, prefix: str) -> list:
    return [object_named(f"{prefix} {index}", f"value {index}") for index in range(count)]


@contextlib.contextmanager
def refused(kind: str, path: str | None = None):
    """Expect a TransactionError (a ValueError) of `kind`, whose path (when given) is `path` and is in its message."""
    with pytest.raises(TransactionError) as info:
        yield info
    error = info.value
    assert isinstance(error, ValueError)
    assert error.kind == kind, str(error)
    assert str(error).startswith(f"{kind}: "), str(error)
    if path is not None:
        assert error.path == path, str(error)
        assert path in str(error), str(error)


def chain(depth: int) -> dict:
    """An envelope whose dependencies nest `depth` deep, built without validation."""
    envelope = _raw("dump", "level0")
    for level in range(1, depth + 1):
        envelope = _raw("dump", f"level{level}", dependencies=[envelope["transaction"]])
    return envelope


def _raw(contract_id="dump", method_id="m", store=None, **fields) -> dict:
    return {"transaction": blank_transaction(contract_id, method_id, **fields), "store": store or {}}


# -- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "Z", "0", "bank", "create_account", "v1.2-beta", "a" * NAME_CHARS_MAX, "9_._-"])
def test_valid_names(name):
    assert is_name(name)
    validate_envelope(_raw(name, name))


@pytest.mark.parametrize(
    "name",
    ["", "_x", ".x", "-x", "a/b", "a b", "café", "a" * (NAME_CHARS_MAX + 1), "x\n", "*", "%41", None, 5],
    ids=repr,
)
def test_bad_names_are_refused(name):
    assert not is_name(name)
    if isinstance(name, str):
        with refused("bad_name", "transaction.contractID"):
            build_transaction(name, "m")
        with refused("bad_name", "transaction.methodID"):
            build_transaction("dump", name)


def test_a_bad_name_in_a_dependency_names_its_path():
    envelope = _raw(dependencies=[_raw("dump", "ok")["transaction"], _raw("dump", "not ok")["transaction"]])
    with refused("bad_name", "transaction.dependencies[1].methodID"):
        validate_envelope(envelope)


# -- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters, kind, path",
    [
        ([0.5], "float_number", "transaction.parameters[0]"),
        ([1, {"x": [1.5]}], "float_number", "transaction.parameters[1].x[0]"),
        ([-0.0], "float_number", "transaction.parameters[0]"),
        ([2**64], "number_out_of_range", "transaction.parameters[0]"),
        ([-(2**63) - 1], "number_out_of_range", "transaction.parameters[0]"),
        ([1e19], "number_out_of_range", "transaction.parameters[0]"),
        ([10**5000], "number_out_of_range", "transaction.parameters[0]"),
    ],
)
def test_numbers_in_parameters(parameters, kind, path):
    with refused(kind, path):
        build_transaction("dump", "m", parameters=parameters)


def test_numbers_in_a_dependency_name_its_path():
    envelope = _raw(dependencies=[_raw(parameters=[1, 2.5])["transaction"]])
    with refused("float_number", "transaction.dependencies[0].parameters[1]"):
        validate_envelope(envelope)


def test_integer_bounds_are_taken():
    build_transaction("dump", "m", parameters=[-(2**63), 2**64 - 1, True, None])


# -- sizes and counts --------------------------------------------------------------------------------


def _envelope_bytes(envelope: dict) -> int:
    return len(json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode())


def test_envelope_of_exactly_the_limit_is_taken_and_one_byte_more_is_refused():
    envelope = _raw(outputs=["a" * VALUE_BYTES_MAX] * 15 + [""])
    room = ENVELOPE_BYTES_MAX - _envelope_bytes(envelope)
    assert 0 < room <= VALUE_BYTES_MAX
    envelope["transaction"]["outputs"][-1] = "a" * room
    assert _envelope_bytes(envelope) == ENVELOPE_BYTES_MAX
    validate_envelope(envelope)
    envelope["transaction"]["outputs"][-1] += "a"
    with refused("envelope_too_large", "envelope"):
        validate_envelope(envelope)


def test_envelope_size_counts_utf8_bytes():
    envelope = _raw(outputs=["é" * (VALUE_BYTES_MAX // 2)] * 16)  # 16 * 64 KiB of bytes, half as many characters
    with refused("envelope_too_large"):
        validate_envelope(envelope)


@pytest.mark.parametrize(
    "field, limit, kind",
    [
        ("inputs", INPUTS_MAX, "too_many_inputs"),
        ("reference_inputs", REFERENCES_MAX, "too_many_references"),
    ],
)
def test_too_many_inputs_and_references(field, limit, kind):
    build_transaction("dump", "m", **{field: objects(limit, field)})
    with refused(kind, "transaction"):
        build_transaction("dump", "m", **{field: objects(limit + 1, field)})


def test_too_many_outputs():
    build_transaction("dump", "m", outputs=["x"] * OUTPUTS_MAX)
    with refused("too_many_outputs", "transaction"):
        build_transaction("dump", "m", outputs=["x"] * (OUTPUTS_MAX + 1))


def test_too_many_dependencies():
    dependencies = [build_transaction("dump", "m", outputs=[str(index)]) for index in range(DEPENDENCIES_MAX + 1)]
    build_transaction("dump", "m", dependencies=dependencies[:DEPENDENCIES_MAX])
    with refused("too_many_dependencies", "transaction"):
        build_transaction("dump", "m", dependencies=dependencies)


def test_counts_are_per_transaction_not_per_tree():
    dependency = build_transaction("dump", "m", objects(INPUTS_MAX, "inner"))
    envelope = build_transaction("dump", "m", objects(INPUTS_MAX, "outer"), dependencies=[dependency])
    envelope["transaction"]["dependencies"][0]["inputIDs"].append(object_named("one more").id)
    envelope["store"][object_named("one more").id] = "v"
    with refused("too_many_inputs", "transaction.dependencies[0]"):
        validate_envelope(envelope)


def test_dependencies_nest_at_most_four_deep():
    envelope = build_transaction("dump", "level0")
    for level in range(1, DEPENDENCY_DEPTH_MAX + 1):
        envelope = build_transaction("dump", f"level{level}", dependencies=[envelope])
    with refused("dependencies_too_deep", "transaction"):
        build_transaction("dump", "too_deep", dependencies=[envelope])


def test_depth_is_one_more_than_the_deepest_dependency():
    validate_envelope(_raw(dependencies=[chain(0)["transaction"], chain(DEPENDENCY_DEPTH_MAX - 1)["transaction"]]))
    with refused("dependencies_too_deep"):
        validate_envelope(_raw(dependencies=[chain(0)["transaction"], chain(DEPENDENCY_DEPTH_MAX)["transaction"]]))


def test_value_too_large_in_outputs_counts_utf8_bytes():
    build_transaction("dump", "m", outputs=["a" * VALUE_BYTES_MAX, "é" * (VALUE_BYTES_MAX // 2)])
    with refused("value_too_large", "transaction.outputs[1]"):
        build_transaction("dump", "m", outputs=["a", "é" * (VALUE_BYTES_MAX // 2) + "a"])


def test_value_too_large_in_the_store():
    big = object_named("big", "a" * (VALUE_BYTES_MAX + 1))
    with refused("value_too_large", f"store.{big.id}"):
        build_transaction("dump", "m", reference_inputs=[big])


# -- objects named twice, ids, the store -------------------------------------------------------------


def test_duplicate_input_in_one_transaction():
    once = object_named("once")
    with refused("duplicate_input", "transaction.inputIDs[1]"):
        build_transaction("dump", "m", [once, once])


def test_duplicate_input_across_dependencies():
    shared = object_named("shared")
    dependency = build_transaction("dump", "inner", [shared])
    with refused("duplicate_input", "transaction.dependencies[0].inputIDs[0]"):
        build_transaction("dump", "outer", [shared], dependencies=[dependency])


def test_a_reference_may_be_read_twice():
    shared = object_named("shared")
    dependency = build_transaction("dump", "inner", reference_inputs=[shared])
    build_transaction("dump", "outer", reference_inputs=[shared, shared], dependencies=[dependency])


def test_input_also_reference_in_one_transaction_and_across_dependencies():
    both = object_named("both")
    with refused("input_also_reference"):
        build_transaction("dump", "m", [both], [both])
    dependency = build_transaction("dump", "inner", reference_inputs=[both])
    with refused("input_also_reference"):
        build_transaction("dump", "outer", [both], dependencies=[dependency])


@pytest.mark.parametrize("bad_id", ["AB" * 32, "a" * 63, "a" * 65, "g" * 64, "0x" + "a" * 62, ""], ids=repr)
def test_bad_ids(bad_id):
    with refused("bad_id", "transaction.inputIDs[0]"):
        build_transaction("dump", "m", [Object(bad_id, "v")])
    with refused("bad_id", "transaction.referenceInputIDs[0]"):
        validate_envelope(_raw(referenceInputIDs=[bad_id], store={bad_id: "v"}))


def test_a_bad_id_in_the_store():
    with refused("bad_id"):
        validate_envelope(_raw(store={"nothex": "v"}))


def test_the_store_holds_exactly_what_the_tree_reads():
    read = object_named("read")
    extra = object_named("extra")
    dependency = _raw(inputIDs=[read.id])["transaction"]
    validate_envelope(_raw(dependencies=[dependency], store={read.id: read.value}))
    with refused("missing_from_store", "store") as error:
        validate_envelope(_raw(dependencies=[dependency]))
    assert read.id in str(error.value)
    with refused("unexpected_in_store", "store") as error:
        validate_envelope(_raw(dependencies=[dependency], store={read.id: "v", extra.id: "v"}))
    assert extra.id in str(error.value)
    with refused("unexpected_in_store"):
        build_transaction("dump", "m", dependencies=[{"transaction": _raw()["transaction"], "store": {extra.id: "v"}}])


# -- shape -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "envelope, kind, path",
    [
        ([], "wrong_type", "envelope"),
        ({"transaction": _raw()["transaction"]}, "missing_field", "store"),
        ({**_raw(), "extra": 1}, "unknown_field", "envelope"),
        (_raw(store=None) | {"store": []}, "wrong_type", "store"),
        (_raw(outputs=None), "wrong_type", "transaction.outputs"),
        (_raw(outputs=[1]), "wrong_type", "transaction.outputs[0]"),
        (_raw(contractID=1), "wrong_type", "transaction.contractID"),
        (_raw(parameters=[b"bytes"]), "wrong_type", "transaction.parameters[0]"),
        (_raw(parameters=[{1: "x"}]), "wrong_type", "transaction.parameters[0]"),
        (_raw(dependencies=[{"contractID": "x"}]), "missing_field", "transaction.dependencies[0].methodID"),
        ({"transaction": {**_raw()["transaction"], "memo": ""}, "store": {}}, "unknown_field", "transaction"),
        (_raw(outputs=["\ud800"]), "lone_surrogate", "transaction.outputs[0]"),
    ],
)
def test_shape_errors_name_the_path(envelope, kind, path):
    with refused(kind, path):
        validate_envelope(envelope)


def test_parameters_nested_deeper_than_the_api_can_parse_are_malformed_json():
    # The envelope is level 1, T 2, parameters 3: a parameter may hold 124 more levels, not 125.
    def nested(levels):
        value = []
        for _ in range(levels - 1):
            value = [value]
        return value

    validate_envelope(_raw(parameters=[nested(JSON_NESTING_MAX - 3)]))
    with refused("malformed_json"):
        validate_envelope(_raw(parameters=[nested(JSON_NESTING_MAX - 2)]))


def test_the_size_is_checked_before_names_and_the_depth_before_limits():
    # The Rust order (core/src/validate.rs): size, depth, then each transaction, then the tree and the store.
    with refused("envelope_too_large"):
        validate_envelope(_raw("bad name", outputs=["a" * VALUE_BYTES_MAX] * 17))
    with refused("dependencies_too_deep"):
        validate_envelope(_raw("bad name", dependencies=[chain(DEPENDENCY_DEPTH_MAX)["transaction"]]))


# -- malformed input is a ValueError, never a KeyError -----------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: concerned_shards({}, 2),
        lambda: concerned_shards({"contractID": "x"}, 2),
        lambda: output_ids({**_raw()["transaction"], "dependencies": [{}]}),
        lambda: checker_request({"transaction": {}, "store": {}}),
        lambda: checker_request({"transaction": _raw(inputIDs=["ab" * 32])["transaction"], "store": {}}),
        lambda: checker_request([]),
        lambda: outputs({"transaction": {}}),
        lambda: outputs({}),
    ],
)
def test_encoding_functions_raise_value_error_on_malformed_input(call):
    with pytest.raises(ValueError):
        call()


def test_is_lower_hex():
    assert is_lower_hex("0a" * 32, 64) and is_lower_hex("", 0)
    assert not is_lower_hex("0A" * 32, 64) and not is_lower_hex("0a" * 32, 63) and not is_lower_hex(None, 0)
    assert not is_lower_hex("٠" * 64, 64)  # Arabic-Indic digits are digits to str.isdigit, not hex


def test_limits_match_the_rust_core():
    # One value per limit in both languages: read core/src/limits.rs rather than trust a copy.
    source = (ROOT / "core" / "src" / "limits.rs").read_text(encoding="utf-8")
    rust = {
        name: eval(expression, {"__builtins__": {}})  # simple products like `64 * 1024`
        for name, expression in re.findall(r"pub const (\w+): usize = ([0-9 *]+);", source)
    }
    names = [
        "ENVELOPE_BYTES_MAX",
        "INPUTS_MAX",
        "REFERENCES_MAX",
        "OUTPUTS_MAX",
        "DEPENDENCIES_MAX",
        "DEPENDENCY_DEPTH_MAX",
        "VALUE_BYTES_MAX",
        "NAME_CHARS_MAX",
    ]
    assert {name: rust.get(name) for name in names} == {name: getattr(limits, name) for name in names}
