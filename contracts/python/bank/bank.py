"""The `bank` contract (docs/checkers.md §3): accounts owned by ed25519 keys, signed transfers.

An account is {"balance": int, "owner": "<64 hex>", "seq": int}. `create_account`
opens one with at most OPENING_BALANCE_MAX (a demo faucet); `transfer` moves an
amount between two accounts, signed by the payer's owner, conserving the total.
The payer's `seq` grows by one, so no account state repeats and no signature
can be replayed.
"""

import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shardspace import (
    INT64_MAX,
    Contract,
    canonical_json,
    is_int,
    is_lower_hex,
    load_canonical,
    require,
    require_keys,
)

OPENING_BALANCE_MAX = 1000
ACCOUNT_KEYS = ("balance", "owner", "seq")
# An ed25519 public key is 32 bytes, a signature 64, both as lowercase hex.
OWNER_HEX_CHARS = 64
SIGNATURE_HEX_CHARS = 128

bank = Contract("bank")


def account(owner: str, balance: int, seq: int = 0) -> str:
    """The value of an account."""
    return canonical_json({"balance": balance, "owner": owner, "seq": seq})


def new_keypair(seed: bytes | None = None):
    """(secret key, owner): a new ed25519 key, from a 32-byte `seed` when given, and its public key as hex."""
    secret_key = Ed25519PrivateKey.generate() if seed is None else Ed25519PrivateKey.from_private_bytes(seed)
    owner = secret_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return secret_key, owner


def transfer_message(amount, payer: str, payee: str) -> bytes:
    """What the payer signs: the amount and both input values exactly as stored."""
    message = {"amount": amount, "inputs": [payer, payee], "method": "bank.transfer", "references": []}
    return canonical_json(message).encode("utf-8")


def sign_transfer(secret_key: Ed25519PrivateKey, amount, payer: str, payee: str) -> str:
    return secret_key.sign(transfer_message(amount, payer, payee)).hex()


@bank.method("create_account")
def create_account(inputs, reference_inputs, parameters):
    owner, balance = parameters
    return {"outputs": [account(owner, balance)]}


@bank.method("transfer")
def transfer(inputs, reference_inputs, parameters, secret_key):
    payer_value, payee_value = inputs
    (amount,) = parameters
    payer, payee = json.loads(payer_value), json.loads(payee_value)
    outputs = [
        account(payer["owner"], payer["balance"] - amount, payer["seq"] + 1),
        account(payee["owner"], payee["balance"] + amount, payee["seq"]),
    ]
    return {"outputs": outputs, "parameters": [amount, sign_transfer(secret_key, amount, payer_value, payee_value)]}


@bank.checker("create_account", inputs=0, reference_inputs=0, parameters=2, outputs=1, returns=0)
def check_create_account(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    owner, balance = parameters
    require(_is_owner(owner), "the owner must be an ed25519 public key as 64 lowercase hex characters")
    require(
        is_int(balance, 0, OPENING_BALANCE_MAX),
        f"the opening balance must be an integer from 0 to {OPENING_BALANCE_MAX}",
    )
    _require_account(outputs[0], {"balance": balance, "owner": owner, "seq": 0}, "the new account")
    return True


@bank.checker("transfer", inputs=2, reference_inputs=0, parameters=2, outputs=2, returns=0)
def check_transfer(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    payer_value, payee_value = inputs
    payer = parse_account(payer_value, "the payer account")
    payee = parse_account(payee_value, "the payee account")
    amount, signature = parameters
    require(is_int(amount, 1, payer["balance"]), "the amount must be an integer from 1 to the payer's balance")
    require(payee["balance"] <= INT64_MAX - amount, "the payee's balance would overflow 2^63-1")
    require(payer["seq"] < INT64_MAX, "the payer's seq would overflow 2^63-1")
    require(is_lower_hex(signature, SIGNATURE_HEX_CHARS), "the signature must be 128 lowercase hex")
    require(
        _verify(payer["owner"], signature, transfer_message(amount, payer_value, payee_value)),
        "the signature is not the payer owner's over this transfer",
    )
    payer_after = {"balance": payer["balance"] - amount, "owner": payer["owner"], "seq": payer["seq"] + 1}
    payee_after = {"balance": payee["balance"] + amount, "owner": payee["owner"], "seq": payee["seq"]}
    _require_account(outputs[0], payer_after, "the payer's new account")
    _require_account(outputs[1], payee_after, "the payee's new account")
    return True


def parse_account(value: str, what: str) -> dict:
    """The account in `value`, or Reject naming `what`."""
    parsed = load_canonical(value, what)
    require_keys(parsed, ACCOUNT_KEYS, what)
    require(_is_owner(parsed["owner"]), f"{what}: the owner must be 64 lowercase hex characters")
    require(is_int(parsed["balance"], 0), f"{what}: the balance must be an integer from 0 to 2^63-1")
    require(is_int(parsed["seq"], 0), f"{what}: seq must be an integer from 0 to 2^63-1")
    return parsed


def _require_account(actual: str, expected: dict, what: str) -> None:
    # Compare the text (both SDKs print it the same way), but name the field that differs.
    if actual == canonical_json(expected):
        return
    try:
        parsed = json.loads(actual)
    except (ValueError, RecursionError):
        parsed = None
    for key in ACCOUNT_KEYS:
        require(
            not isinstance(parsed, dict) or parsed.get(key) == expected[key], f"{what}: {key} must be {expected[key]}"
        )
    require(False, f"{what} must be {canonical_json(expected)}")


def _is_owner(owner) -> bool:
    return is_lower_hex(owner, OWNER_HEX_CHARS)


def _verify(owner: str, signature: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(owner)).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True
