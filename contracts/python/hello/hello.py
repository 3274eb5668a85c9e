"""The `hello` contract (docs/checkers.md §3): greetings, used in the docs and in the process tests.

`greet` takes a name (1 to 100 characters) and creates the text "hello, <name>".
Its output is plain text, not JSON: the one example value that is not.

`greet_counted` greets the n-th visitor, "hello, <name>: visitor <n>", counting
with the `addition` contract's counter through a cross-contract call: its one
dependency is an `addition.increment` call that consumes n - 1 and creates n.
The client takes that call's envelope, built by addition's own client, so this
module needs nothing of addition's but its name and the spelling of a counter.
"""

import re

from shardspace import INT64_MAX, INT64_MIN, Contract, require

NAME_CHARS_MAX = 100
# The call that counts a visitor.
COUNTER_CONTRACT, COUNTER_METHOD = "addition", "increment"
# A counter as `addition` spells it: canonical decimal text in the signed 64-bit range, no
# leading zeros, "+" or "-0" (addition.py's rule, repeated: a contract does not import another).
_DECIMAL = re.compile(r"(0|-?[1-9][0-9]*)")
_DECIMAL_CHARS_MAX = 20

hello = Contract("hello")


@hello.method("greet")
def greet(inputs, reference_inputs, parameters):
    (name,) = parameters
    return {"outputs": ["hello, " + name]}


@hello.method("greet_counted")
def greet_counted(inputs, reference_inputs, parameters, increment):
    """`increment`: the envelope of the addition.increment call that counts this visitor."""
    (name,) = parameters
    counted = increment.get("transaction") if isinstance(increment, dict) else None
    if not isinstance(counted, dict) or not _is_counter_call(counted) or len(counted.get("outputs", ())) != 1:
        raise ValueError(f"greet_counted counts with the envelope of one {COUNTER_CONTRACT}.{COUNTER_METHOD} call")
    (count,) = counted["outputs"]
    return {"outputs": [greeting(name, count)], "dependencies": [increment]}


def greeting(name: str, count: str) -> str:
    """The output of `greet_counted`: `count` is the new counter's value, as text."""
    return f"hello, {name}: visitor {count}"


@hello.checker("greet", inputs=0, reference_inputs=0, parameters=1, outputs=1, returns=0)
def check_greet(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    (name,) = parameters
    _check_name(name)
    require(outputs == ["hello, " + name], "the output must be 'hello, ' + name")
    return True


@hello.checker("greet_counted", inputs=0, reference_inputs=0, parameters=1, outputs=1, returns=0)
def check_greet_counted(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    (name,) = parameters
    _check_name(name)
    require(len(dependencies) == 1, f"expected 1 dependencies, got {len(dependencies)}")
    (counter,) = dependencies
    require(
        _is_counter_call(counter),
        f"the dependency must be a call of {COUNTER_CONTRACT}.{COUNTER_METHOD}, "
        f"not {counter['contractID']}.{counter['methodID']}",
    )
    require(len(counter["outputs"]) == 1, f"the dependency must create 1 counter, not {len(counter['outputs'])}")
    (count,) = counter["outputs"]
    require(_is_counter(count), "the dependency's output (the count) is not a decimal integer")
    # The count is read, not recomputed: that it is the consumed counter plus one is for the
    # dependency's own checker (addition.increment), which the node asks first; its rejection
    # fails this whole transaction.
    require(outputs == [greeting(name, count)], "the output must be 'hello, ' + name + ': visitor ' + the count")
    return True


def _check_name(name) -> None:
    require(isinstance(name, str), "the name must be a string")
    # len() counts code points, as Rust's chars().count() does: both SDKs agree on the limit.
    require(1 <= len(name) <= NAME_CHARS_MAX, f"the name must be 1 to {NAME_CHARS_MAX} characters")


def _is_counter_call(transaction_or_request: dict) -> bool:
    # A transaction and a checker request name their contract and method with the same keys.
    call = (transaction_or_request.get("contractID"), transaction_or_request.get("methodID"))
    return call == (COUNTER_CONTRACT, COUNTER_METHOD)


def _is_counter(text: str) -> bool:
    # fullmatch, not match + "$": "$" also matches before a trailing newline.
    if len(text) > _DECIMAL_CHARS_MAX or not _DECIMAL.fullmatch(text):
        return False
    return INT64_MIN <= int(text) <= INT64_MAX
