"""Ids and the canonical encoding of transactions (docs/checkers.md §1, DESIGN.md §3).

This module owns the bytes that both SDKs must agree on: the canonical JSON, the
txId, object ids, the shard map, the created ids and concerned shards of a
transaction, and the checker request built from an envelope. The Rust twin is
`core`; `checker-sdk/fixtures/transactions.json` pins both. What may be encoded
is `jsonvalue.check_value`'s to say, what makes a well-formed transaction
`validate`'s; malformed input is a ValueError here, never a KeyError.
"""

import hashlib
import json

from .jsonvalue import JsonValueError, check_value
from .validate import ID_HEX_CHARS, TRANSACTION_FIELDS, TransactionError, is_lower_hex, validate_transaction

__all__ = [
    "TRANSACTION_FIELDS",
    "canonical_json",
    "checker_request",
    "concerned_shards",
    "object_id",
    "output_ids",
    "sha256_hex",
    "shard_of",
    "transaction_id",
    "validate_transaction",
]


def canonical_json(value) -> str:
    """The canonical JSON text of `value`: sorted keys, no whitespace, ASCII only.

    Raises ValueError (a JsonValueError with `.kind` and `.path`), naming the path
    of the offending part (`parameters[2].x`), for what the other SDK could not
    print the same way: floats (`float_number`, or `number_out_of_range` for an
    integral float of magnitude 2^63 or more, as serde_json reads 1e19), integers
    outside [-2**63, 2**64-1], lone surrogates, non-string keys and non-JSON types.
    """
    check_value(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except RecursionError:
        raise JsonValueError("too_deep", "", "the value is nested too deeply to encode") from None


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
    if not is_lower_hex(text, ID_HEX_CHARS):
        raise ValueError(f"{what} must be {ID_HEX_CHARS} lowercase hex characters, not {text!r:.80}")


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
    created = output_ids(transaction)  # validates T first: a malformed one is a ValueError, never a KeyError
    ids = _read_ids(transaction) + created
    return sorted({shard_of(item, shards) for item in ids})


def _read_ids(transaction: dict) -> list:
    ids = list(transaction["inputIDs"]) + list(transaction["referenceInputIDs"])
    for dependency in transaction["dependencies"]:
        ids.extend(_read_ids(dependency))
    return ids


def checker_request(envelope: dict) -> dict:
    """The checker request (docs/checkers.md §2) of an envelope {"transaction": T, "store": {id: value}}.

    Raises TransactionError (a ValueError) for a malformed envelope, or a store
    without the value of an input or reference (`missing_from_store`).
    """
    if not isinstance(envelope, dict) or "transaction" not in envelope or "store" not in envelope:
        raise TransactionError("wrong_type", "envelope", 'an envelope is {"transaction": T, "store": {id: value}}')
    if not isinstance(envelope["store"], dict):
        raise TransactionError("wrong_type", "store", "envelope.store must be an object")
    validate_transaction(envelope["transaction"])
    return _request_of(envelope["transaction"], envelope["store"])


def _request_of(transaction: dict, store: dict, top: bool = True) -> dict:
    request = {
        "contractID": transaction["contractID"],
        "methodID": transaction["methodID"],
        "inputs": [_stored(store, item) for item in transaction["inputIDs"]],
        "referenceInputs": [_stored(store, item) for item in transaction["referenceInputIDs"]],
        "parameters": transaction["parameters"],
        "returns": transaction["returns"],
        "outputs": transaction["outputs"],
    }
    # A dependency without dependencies of its own has no such key, as Chainspace's
    # transaction_to_solution sends it (docs/checkers.md §2).
    if top or transaction["dependencies"]:
        request["dependencies"] = [_request_of(dependency, store, False) for dependency in transaction["dependencies"]]
    return request


def _stored(store: dict, item: str) -> str:
    if item not in store:
        raise TransactionError("missing_from_store", "store", f"the store has no value for object {item}")
    value = store[item]
    if not isinstance(value, str):
        raise TransactionError("wrong_type", f"store.{item}", f"the store's value for object {item} must be a string")
    return value
