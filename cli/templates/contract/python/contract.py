"""The `__NAME__` contract: notes of 1 to 280 characters.

`write(text)` creates a note holding `text`; `amend(text)` consumes a note and creates
its new text, which must differ. Made by `shardspace contract new`: make the rules your
own, and keep test___NAME__.py saying what the contract accepts and why it rejects.

Client side (`@contract.method`): what a transaction creates, built by whoever submits it.
Server side (`@contract.checker`): whether a transaction is valid, asked by every replica.
"""

from shardspace import Contract, require

TEXT_CHARS_MAX = 280

contract = Contract("__NAME__")


@contract.method("write")
def write(inputs, reference_inputs, parameters):
    (text,) = parameters
    return {"outputs": [text]}


@contract.method("amend")
def amend(inputs, reference_inputs, parameters):
    (text,) = parameters
    return {"outputs": [text]}


@contract.checker("write", inputs=0, reference_inputs=0, parameters=1, outputs=1, returns=0)
def check_write(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    check_note(parameters[0], outputs[0])
    return True


@contract.checker("amend", inputs=1, reference_inputs=0, parameters=1, outputs=1, returns=0)
def check_amend(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    check_note(parameters[0], outputs[0])
    require(outputs[0] != inputs[0], "an amended note must change")
    return True


def check_note(text, note):
    require(isinstance(text, str), "the text must be a string")
    require(1 <= len(text) <= TEXT_CHARS_MAX, f"a note holds 1 to {TEXT_CHARS_MAX} characters")
    require(note == text, "the note must hold the text given")
