"""The `addition` contract (docs/checkers.md §3): a counter, as decimal text.

`init` creates "0"; `increment` consumes n and creates n + 1. Values are
canonical decimal integers within the signed 64-bit range.
"""

import re

from shardspace import INT64_MAX, INT64_MIN, Contract, require

# One spelling per number: no leading zeros, no "+", and no "-0" (serde_json would read it as a float).
_DECIMAL = re.compile(r"(0|-?[1-9][0-9]*)")
# 2^63 has 19 digits: anything longer is out of range, and we never hand int() a huge string.
_DECIMAL_CHARS_MAX = 20

addition = Contract("addition")


@addition.method("init")
def init(inputs, reference_inputs, parameters):
    return {"outputs": ["0"]}


@addition.method("increment")
def increment(inputs, reference_inputs, parameters):
    (counter,) = inputs
    return {"outputs": [str(int(counter) + 1)]}


@addition.checker("init", inputs=0, reference_inputs=0, parameters=0, outputs=1, returns=0)
def check_init(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    require(outputs == ["0"], "init must create '0'")
    return True


@addition.checker("increment", inputs=1, reference_inputs=0, parameters=0, outputs=1, returns=0)
def check_increment(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    counter = parse_counter(inputs[0])
    require(counter < INT64_MAX, "the counter would overflow 2^63-1")
    require(outputs == [str(counter + 1)], "the output must be the input plus one, in decimal")
    return True


def parse_counter(text: str) -> int:
    """The integer of a counter value, or Reject if it is not canonical decimal text in range."""
    # fullmatch, not match + "$": "$" also matches before a trailing newline.
    require(len(text) <= _DECIMAL_CHARS_MAX and _DECIMAL.fullmatch(text), "the input is not a decimal integer")
    counter = int(text)
    require(INT64_MIN <= counter <= INT64_MAX, "the input is outside the signed 64-bit range")
    return counter
