"""Ids and the canonical encoding of transactions (docs/checkers.md §1, DESIGN.md §3).

This module owns the bytes that both SDKs must agree on: the canonical JSON, the
txId, object ids, the shard map, the created ids and concerned shards of a
transaction, and the checker request built from an envelope. The Rust twin is
`core`; `checker-sdk/fixtures/transactions.json` pins both.
"""

import hashlib
import json
import re

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

# The eight fields of a transaction T, all present, in the order we validate them.
TRANSACTION_FIELDS = (
    "contractID",
    "methodID",
    "inputIDs",
    "referenceInputIDs",
    "parameters",
    "returns",
    "outputs",
    "dependencies",
)

_HEX_ID = re.compile(r"[0-9a-f]{64}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def canonical_json(value) -> str:
    """The canonical JSON text of `value`: sorted keys, no whitespace, ASCII only.

    Raises ValueError, naming the path of the offending part (`parameters[2].x`),
    for what the other SDK could not print the same way: floats, integers outside
    [-2**63, 2**64-1], lone surrogates, non-string keys and non-JSON types.
    """
    try:
        _check_encodable(value, "")
    except RecursionError:
        raise ValueError("too_deep: the value is nested too deeply to encode") from None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _check_encodable(value, path: str) -> None:
    # bool before int: bool is a subclass of int, and true/false are fine.
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"number_out_of_range: {_show(path)} is {value}, outside [-2^63, 2^64-1]")
        return
    if isinstance(value, float):
        raise ValueError(f"float_number: {_show(path)} is {value!r}; only integers are allowed")
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_encodable(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"wrong_type: {_show(path)} has a key {key!r} that is not a string")
            _check_text(key, path)
            _check_encodable(item, _join(path, key))
        return
    raise ValueError(f"wrong_type: {_show(path)} is a {type(value).__name__}, not a JSON value")


def _check_text(text: str, path: str) -> None:
    # A lone surrogate is not a character: it has no UTF-8 form, so no value or id can hold it.
    if _LONE_SURROGATE.search(text):
        raise ValueError(f"lone_surrogate: {_show(path)} holds a lone UTF-16 surrogate")


def _join(path: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _show(path: str) -> str:
    return path or "the value"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def transaction_id(transaction: dict) -> str:
    """The txId: lowercase hex SHA-256 of the canonical JSON of T."""
    return sha256_hex(canonical_json(transaction).encode("ascii"))


def object_id(tx_id: str, value: str, index: int) -> str:
    """The id of output `index` (value `value`) of the transaction `tx_id`."""
    _check_id(tx_id, "tx_id")
    if not isinstance(value, str):
        raise ValueError(f"an object value must be a string, not {type(value).__name__}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"an output index must be an integer >= 0, not {index!r}")
    value_hash = sha256_hex(value.encode("utf-8"))
    return sha256_hex(f"{tx_id}|{value_hash}|{index}".encode("utf-8"))


def shard_of(object_id: str, shards: int) -> int:
    """The shard owning `object_id`: the id as a big-endian 256-bit integer, mod `shards`."""
    _check_id(object_id, "object id")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"the number of shards must be an integer >= 1, not {shards!r}")
    return int(object_id, 16) % shards


def _check_id(text, what: str) -> None:
    # int(x, 16) would also take "0x..", "_" and upper case: ids have one spelling only.
    if not isinstance(text, str) or not _HEX_ID.fullmatch(text):
        raise ValueError(f"{what} must be 64 lowercase hex characters, not {text!r}")


def validate_transaction(transaction, path: str = "transaction") -> None:
    """Raise ValueError (naming the field's path) unless T has exactly the eight fields, well typed."""
    if not isinstance(transaction, dict):
        raise ValueError(f"{path} must be an object")
    extra = sorted(set(transaction) - set(TRANSACTION_FIELDS))
    if extra:
        raise ValueError(f"{path} has unknown fields {extra}; a transaction has exactly {list(TRANSACTION_FIELDS)}")
    for field in TRANSACTION_FIELDS:
        if field not in transaction:
            raise ValueError(f"{path}.{field} is missing")
    for field in ("contractID", "methodID"):
        if not isinstance(transaction[field], str):
            raise ValueError(f"{path}.{field} must be a string")
    for field in TRANSACTION_FIELDS[2:]:
        if not isinstance(transaction[field], list):
            raise ValueError(f"{path}.{field} must be a list")
    for field in ("inputIDs", "referenceInputIDs"):
        for index, item in enumerate(transaction[field]):
            _check_id(item, f"{path}.{field}[{index}]")
    for field in ("returns", "outputs"):
        for index, item in enumerate(transaction[field]):
            if not isinstance(item, str):
                raise ValueError(f"{path}.{field}[{index}] must be a string")
    for index, dependency in enumerate(transaction["dependencies"]):
        validate_transaction(dependency, f"{path}.dependencies[{index}]")


def output_ids(transaction: dict) -> list:
    """The ids of the objects T creates: its outputs in index order, then each dependency's, depth first."""
    validate_transaction(transaction)
    return _created_ids(transaction)


def _created_ids(transaction: dict) -> list:
    tx_id = transaction_id(transaction)
    ids = [object_id(tx_id, value, index) for index, value in enumerate(transaction["outputs"])]
    for dependency in transaction["dependencies"]:
        ids.extend(_created_ids(dependency))
    return ids


def concerned_shards(transaction: dict, shards: int) -> list:
    """The sorted distinct shards of every input, reference and created object of T, dependencies' included."""
    ids = _read_ids(transaction) + output_ids(transaction)
    return sorted({shard_of(item, shards) for item in ids})


def _read_ids(transaction: dict) -> list:
    ids = list(transaction["inputIDs"]) + list(transaction["referenceInputIDs"])
    for dependency in transaction["dependencies"]:
        ids.extend(_read_ids(dependency))
    return ids


def checker_request(envelope: dict) -> dict:
    """The checker request (docs/checkers.md §2) of an envelope {"transaction": T, "store": {id: value}}."""
    if not isinstance(envelope, dict) or "transaction" not in envelope or "store" not in envelope:
        raise ValueError('an envelope is {"transaction": T, "store": {id: value}}')
    if not isinstance(envelope["store"], dict):
        raise ValueError("envelope.store must be an object")
    validate_transaction(envelope["transaction"])
    return _request_of(envelope["transaction"], envelope["store"])


def _request_of(transaction: dict, store: dict) -> dict:
    return {
        "contractID": transaction["contractID"],
        "methodID": transaction["methodID"],
        "inputs": [_stored(store, item) for item in transaction["inputIDs"]],
        "referenceInputs": [_stored(store, item) for item in transaction["referenceInputIDs"]],
        "parameters": transaction["parameters"],
        "returns": transaction["returns"],
        "outputs": transaction["outputs"],
        "dependencies": [_request_of(dependency, store) for dependency in transaction["dependencies"]],
    }


def _stored(store: dict, item: str) -> str:
    try:
        value = store[item]
    except KeyError:
        raise ValueError(f"the store has no value for object {item}") from None
    if not isinstance(value, str):
        raise ValueError(f"the store's value for object {item} must be a string")
    return value
