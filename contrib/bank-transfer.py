"""Opens two bank accounts on different shards through the API with the Python SDK's
client, and writes a signed transfer between them to a file, for curl or the CLI.

    .venv/bin/python contrib/bank-transfer.py [--api URL] [--amount 25] [--out transfer.json]
"""

import argparse
import json
import os
import sys
from pathlib import Path

from shardspace import Client, outputs, shard_of, transaction_id
from shardspace.checker import load_module

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:5000")
    parser.add_argument("--amount", type=int, default=25)
    parser.add_argument("--out", default="transfer.json")
    args = parser.parse_args()

    bank = load_module(ROOT / "contracts/python/bank/bank.py")
    client = Client(args.api)
    shards = len(client.cluster()["shards"])

    def open_account(name: str, shard: int, balance: int):
        while True:
            key, owner = bank.new_keypair(os.urandom(32))
            envelope = bank.bank.call("create_account", [], [], [owner, balance])
            account = outputs(envelope)[0]
            if shard_of(account.id, shards) == shard:
                break
        outcome = client.submit(envelope)
        print(f"opened {name}'s account {account.id} with {balance} on shard {shard}: {outcome['outcome']}")
        return key, account

    alice_key, alice = open_account("alice", 0, 100)
    _, bob = open_account("bob", 1 % shards, 100)
    transfer = bank.bank.call("transfer", [alice, bob], [], [args.amount], alice_key)
    Path(args.out).write_text(json.dumps(transfer))
    new_alice, new_bob = outputs(transfer)
    print(f"wrote the transfer of {args.amount} from alice to bob, signed by alice: {args.out}")
    print(f"  txId {transaction_id(transfer['transaction'])}")
    print(f"  alice's new account will be {new_alice.id}, bob's {new_bob.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
