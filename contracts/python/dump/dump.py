"""The `dump` contract (docs/checkers.md §3): every method is accepted, whatever the request.

For tests and benchmarks: `put` creates its private arguments as outputs, so
`put([], [], [], "a", "b")` makes two objects.
"""

from shardspace import Contract

dump = Contract("dump")


@dump.method("put")
def put(inputs, reference_inputs, parameters, *values):
    return {"outputs": list(values)}


@dump.checker("*")
def accept(inputs, reference_inputs, parameters, outputs, returns, dependencies):
    return True
