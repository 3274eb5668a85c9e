"""Shardspace's Python SDK: ids and canonical encoding, contracts, the checker server and the API client.

    from shardspace import Contract, Reject
    hello = Contract("hello")

`encoding` owns the bytes both SDKs agree on, `validate` what the ledger
refuses (with the bounds of `limits`), `jsonvalue` how JSON is read and which
numbers are allowed, `contract` the client methods and checkers, `checker` the
HTTP server of checkers, `client` the API client, `encode` a stdin filter for
cross-language tests.
"""

from .client import ApiError, ApiUnavailable, Client
from .contract import (
    CheckerFailed,
    Contract,
    Object,
    Reject,
    build_transaction,
    is_int,
    load_canonical,
    outputs,
    require,
    require_keys,
)
from .encoding import (
    canonical_json,
    checker_request,
    concerned_shards,
    object_id,
    output_ids,
    shard_of,
    transaction_id,
)
from .limits import INT64_MAX, INT64_MIN, UINT64_MAX
from .validate import TransactionError, is_lower_hex, is_name, validate_envelope

__version__ = "0.1.0"

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "UINT64_MAX",
    "ApiError",
    "ApiUnavailable",
    "CheckerFailed",
    "Client",
    "Contract",
    "Object",
    "Reject",
    "TransactionError",
    "build_transaction",
    "canonical_json",
    "checker_request",
    "concerned_shards",
    "is_int",
    "is_lower_hex",
    "is_name",
    "load_canonical",
    "object_id",
    "output_ids",
    "outputs",
    "require",
    "require_keys",
    "shard_of",
    "transaction_id",
    "validate_envelope",
]
