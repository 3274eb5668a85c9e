"""The ids and canonical encoding (docs/checkers.md §1) against transactions.json, and what they refuse."""

import hashlib

import pytest

from shardspace import (
    canonical_json,
    checker_request,
    concerned_shards,
    object_id,
    output_ids,
    shard_of,
    transaction_id,
)
from shardspace.encoding import validate_transaction
from shapes import blank_transaction


def test_canonical_json_matches_fixture(transaction_case):
    assert canonical_json(transaction_case["envelope"]["transaction"]) == transaction_case["canonical"]


def test_transaction_id_matches_fixture(transaction_case):
    transaction = transaction_case["envelope"]["transaction"]
    assert transaction_id(transaction) == transaction_case["txId"]
    assert hashlib.sha256(transaction_case["canonical"].encode()).hexdigest() == transaction_case["txId"]


def test_output_ids_match_fixture(transaction_case):
    assert output_ids(transaction_case["envelope"]["transaction"]) == transaction_case["outputs"]


def test_concerned_shards_match_fixture(transaction_case):
    transaction = transaction_case["envelope"]["transaction"]
    for count, shards in transaction_case["shards"].items():
        assert concerned_shards(transaction, int(count)) == shards


def test_checker_request_matches_fixture(transaction_case):
    assert checker_request(transaction_case["envelope"]) == transaction_case["checkerRequest"]


def test_object_id_is_the_hash_of_tx_value_hash_and_index():
    tx_id = "ab" * 32
    value = "café"
    value_hash = hashlib.sha256(value.encode("utf-8")).hexdigest()
    expected = hashlib.sha256(f"{tx_id}|{value_hash}|7".encode()).hexdigest()
    assert object_id(tx_id, value, 7) == expected


def test_dependency_outputs_take_the_dependency_tx_id():
    dependency = _transaction(outputs=["inner"])
    outer = _transaction(outputs=["outer"], dependencies=[dependency])
    assert output_ids(outer) == [
        object_id(transaction_id(outer), "outer", 0),
        object_id(transaction_id(dependency), "inner", 0),
    ]


def test_canonical_json_sorts_keys_by_code_point_and_escapes_non_ascii():
    expected = '{"a":[true,null],"\\uff01":2,"\\ud83d\\ude00":1}'
    assert canonical_json({"😀": 1, "\uff01": 2, "a": [True, None]}) == expected


@pytest.mark.parametrize(
    "value, kind, path",
    [
        ({"parameters": [1, 2, {"x": 1.5}]}, "float_number", "parameters[2].x"),
        ([1e3], "float_number", "[0]"),
        ({"n": 2**64}, "number_out_of_range", "n"),
        ({"n": -(2**63) - 1}, "number_out_of_range", "n"),
        ({"odd key": ["\ud800"]}, "lone_surrogate", '["odd key"][0]'),
        ({1: "x"}, "wrong_type", "the value"),
        ({"b": b"bytes"}, "wrong_type", "b"),
    ],
)
def test_canonical_json_refuses_what_two_languages_cannot_print_alike(value, kind, path):
    with pytest.raises(ValueError) as error:
        canonical_json(value)
    assert str(error.value).startswith(kind + ":")
    assert path in str(error.value)


def test_canonical_json_takes_the_integer_bounds_and_booleans():
    assert (
        canonical_json([-(2**63), 2**64 - 1, True, False]) == "[-9223372036854775808,18446744073709551615,true,false]"
    )


def test_canonical_json_refuses_deep_nesting_with_value_error():
    deep = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="too_deep"):
        canonical_json(deep)


@pytest.mark.parametrize("bad_id", ["AB" * 32, "0x" + "a" * 62, "a" * 63, "_" + "a" * 63, 5])
def test_shard_of_takes_only_lowercase_hex_ids(bad_id):
    with pytest.raises(ValueError):
        shard_of(bad_id, 2)


def test_shard_of_reads_the_id_as_a_big_endian_integer():
    assert shard_of("00" * 31 + "0b", 10) == 1
    assert shard_of("ff" * 32, 1) == 0
    with pytest.raises(ValueError):
        shard_of("00" * 32, 0)


def test_checker_request_names_a_missing_store_value():
    missing = "cd" * 32
    envelope = {"transaction": _transaction(referenceInputIDs=[missing]), "store": {}}
    with pytest.raises(ValueError, match=missing):
        checker_request(envelope)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"extra": 1}, "unknown fields"),
        ({"outputs": None}, "transaction.outputs must be a list"),
        ({"inputIDs": ["nothex"]}, r"transaction.inputIDs\[0\]"),
        ({"dependencies": [{"contractID": "x"}]}, r"transaction.dependencies\[0\].methodID is missing"),
    ],
)
def test_validate_transaction_names_the_bad_field(change, message):
    with pytest.raises(ValueError, match=message):
        validate_transaction({**_transaction(), **change})


def _transaction(**fields) -> dict:
    return blank_transaction("dump", "test", **fields)
