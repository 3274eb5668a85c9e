"""The `hello` contract (docs/checkers.md §3): one method, `greet`, used in the docs.

`greet` takes a name (1 to 100 characters) and creates the text "hello, <name>".
Its output is plain text, not JSON: the one example value that is not.
"""

from shardspace import Contract, require

NAME_CHARS_MAX = 100

hello = Contract("hello")


@hello.method("greet")
def greet(inputs, reference_inputs, parameters):
    (name,) = parameters
    return {"outputs": ["hello, " + name]}


@hello.checker("greet", inputs=0, reference_inputs=0, parameters=1, outputs=1, returns=0)
def check_greet(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    (name,) = parameters
    require(isinstance(name, str), "the name must be a string")
    # len() counts code points, as Rust's chars().count() does: both SDKs agree on the limit.
    require(1 <= len(name) <= NAME_CHARS_MAX, f"the name must be 1 to {NAME_CHARS_MAX} characters")
    require(outputs == ["hello, " + name], "the output must be 'hello, ' + name")
    return True
