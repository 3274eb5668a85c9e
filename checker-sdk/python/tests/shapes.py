"""Raw transactions for tests, built without the SDK's validation (to feed it bad ones)."""


def blank_transaction(contract_id: str = "dump", method_id: str = "m", **fields) -> dict:
    """A transaction with all eight fields, empty unless given."""
    transaction = {
        "contractID": contract_id,
        "methodID": method_id,
        "inputIDs": [],
        "referenceInputIDs": [],
        "parameters": [],
        "returns": [],
        "outputs": [],
        "dependencies": [],
    }
    transaction.update(fields)
    return transaction
