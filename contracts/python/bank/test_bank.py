"""The bank contract: accounts, signed transfers, and each rule it rejects by (docs/checkers.md §3)."""

import json
from pathlib import Path

import pytest

from shardspace import INT64_MAX, Object, checker_request, outputs
from shardspace.checker import load_module

module = load_module(Path(__file__).with_name("bank.py"))
bank = module.bank

ALICE_KEY, ALICE = module.new_keypair(b"a" * 32)
BOB_KEY, BOB = module.new_keypair(b"b" * 32)
MALLORY_KEY, MALLORY = module.new_keypair(b"m" * 32)


def opened(owner: str, balance: int) -> Object:
    envelope = bank.call("create_account", [], [], [owner, balance])
    assert bank.check_envelope(envelope) == (True, None)
    return outputs(envelope)[0]


def transfer_request(amount=30, key=None, payer=None, payee=None) -> dict:
    payer = payer or Object("aa" * 32, module.account(ALICE, 100, 0))
    payee = payee or Object("bb" * 32, module.account(BOB, 50, 3))
    return checker_request(bank.call("transfer", [payer, payee], [], [amount], key or ALICE_KEY))


def rejected(method: str, request: dict, reason: str) -> None:
    success, why = bank.check(method, request)
    assert success is False and reason in why, why


def test_keypairs_from_a_seed_are_deterministic():
    assert module.new_keypair(b"a" * 32)[1] == ALICE
    assert len(ALICE) == 64 and module.new_keypair()[1] != ALICE


def test_transfers_chain_and_conserve_the_total():
    alice, bob = opened(ALICE, 100), opened(BOB, 1000)
    first = bank.call("transfer", [alice, bob], [], [30], ALICE_KEY)
    assert bank.check_envelope(first) == (True, None)
    alice, bob = outputs(first)
    assert json.loads(alice.value) == {"balance": 70, "owner": ALICE, "seq": 1}
    assert json.loads(bob.value) == {"balance": 1030, "owner": BOB, "seq": 0}
    back = bank.call("transfer", [bob, alice], [], [1030], BOB_KEY)
    assert bank.check_envelope(back) == (True, None)
    bob, alice = outputs(back)
    assert json.loads(alice.value)["balance"] == 1100 and json.loads(bob.value)["balance"] == 0


@pytest.mark.parametrize(
    "parameters, reason",
    [
        ([ALICE, 1001], "from 0 to 1000"),
        ([ALICE, -1], "from 0 to 1000"),
        ([ALICE, True], "from 0 to 1000"),
        ([ALICE.upper(), 10], "64 lowercase hex"),
        ([ALICE[:-2], 10], "64 lowercase hex"),
    ],
    ids=["over_opening_max", "negative", "bool", "upper_case_owner", "short_owner"],
)
def test_create_account_rejections(parameters, reason):
    rejected("create_account", checker_request(bank.call("create_account", [], [], parameters)), reason)


def test_create_account_output_must_be_the_new_account():
    request = checker_request(bank.call("create_account", [], [], [ALICE, 10]))
    rejected("create_account", {**request, "outputs": [module.account(ALICE, 10, 1)]}, "seq must be 0")
    rejected("create_account", {**request, "outputs": [module.account(BOB, 10)]}, "owner must be")
    rejected("create_account", {**request, "outputs": [request["outputs"][0] + " "]}, "must be {")


@pytest.mark.parametrize("amount", [0, 101, -5, True], ids=["zero", "over_balance", "negative", "bool"])
def test_amount_must_be_an_integer_within_the_balance(amount):
    rejected("transfer", transfer_request(amount), "the amount must be an integer")


def test_whole_balance_can_be_sent():
    assert bank.check("transfer", transfer_request(100)) == (True, None)


def test_signature_rejections():
    request = transfer_request()
    amount, signature = request["parameters"]
    flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
    rejected("transfer", {**request, "parameters": [amount, flipped]}, "not the payer owner's")
    rejected("transfer", transfer_request(key=MALLORY_KEY), "not the payer owner's")
    rejected("transfer", {**request, "parameters": [amount, signature.upper()]}, "128 lowercase hex")
    rejected("transfer", {**request, "parameters": [amount, signature[:-2]]}, "128 lowercase hex")
    rejected("transfer", {**request, "parameters": [amount]}, "expected 2 parameters")


def test_a_signature_cannot_be_replayed_on_the_next_state():
    first = transfer_request()
    later_payer = Object("cc" * 32, first["outputs"][0])
    replay = transfer_request(payer=later_payer)
    replay["parameters"][1] = first["parameters"][1]
    rejected("transfer", replay, "not the payer owner's")


@pytest.mark.parametrize(
    "index, account, reason",
    [
        (1, (MALLORY, 80, 3), "owner must be"),
        (1, (BOB, 81, 3), "balance must be 80"),
        (0, (ALICE, 70, 0), "seq must be 1"),
        (1, (BOB, 80, 4), "seq must be 3"),
    ],
    ids=["owner_changed", "total_not_conserved", "seq_not_incremented", "payee_seq_changed"],
)
def test_outputs_must_be_the_accounts_after_the_transfer(index, account, reason):
    request = transfer_request()
    request["outputs"][index] = module.account(*account)
    rejected("transfer", request, reason)


def test_payee_balance_cannot_overflow():
    rich = Object("bb" * 32, module.account(BOB, INT64_MAX, 0))
    rejected("transfer", transfer_request(1, payee=rich), "overflow")


@pytest.mark.parametrize(
    "payer_value, reason",
    [
        ("not an account", "not canonical JSON"),
        ('{"balance": 100, "owner": "%s", "seq": 0}' % ALICE, "not canonical JSON"),
        (
            json.dumps({"balance": 1, "owner": ALICE, "seq": 0, "x": 1}, separators=(",", ":"), sort_keys=True),
            "exactly the keys",
        ),
        (module.account(ALICE, -1, 0), "balance must be an integer"),
    ],
    ids=["not_json", "not_canonical", "extra_key", "negative_balance"],
)
def test_input_accounts_must_be_well_formed(payer_value, reason):
    request = transfer_request()
    request["inputs"][0] = payer_value
    rejected("transfer", request, reason)
