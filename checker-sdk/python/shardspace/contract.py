"""Contracts: the client methods that build transactions and the checkers that validate them.

A `Contract` holds both halves of one contract. Client code calls its methods to
build an envelope {"transaction": T, "store": {id: value}} ready to submit; the
checker server (`shardspace.checker`) calls its checkers with checker requests
(docs/checkers.md §2). The helpers at the bottom (`require`, `is_int`,
`load_canonical`, `require_keys`) are the checks every contract needs.
"""

import functools
from collections import namedtuple

from .encoding import canonical_json, checker_request, object_id, transaction_id
from .jsonvalue import JsonValueError, check_value, parse_json
from .limits import INT64_MAX, INT64_MIN, NAME_CHARS_MAX
from .validate import TransactionError, is_name, validate_envelope, validate_transaction

Object = namedtuple("Object", "id value")
Object.__doc__ = "An object of the ledger: its id (64 hex) and its value (a string)."

# A checker for every method of its contract that has none of its own.
WILDCARD = "*"

# Fields of a checker request, in the order they are validated, with their expected shape.
REQUEST_FIELDS = (
    ("contractID", "string"),
    ("methodID", "string"),
    ("inputs", "strings"),
    ("referenceInputs", "strings"),
    ("parameters", "list"),
    ("returns", "strings"),
    ("outputs", "strings"),
    ("dependencies", "requests"),
)

# How a count mismatch names each list in a rejection reason.
_COUNTED = (
    ("inputs", "inputs"),
    ("referenceInputs", "references"),
    ("parameters", "parameters"),
    ("outputs", "outputs"),
    ("returns", "returns"),
)

_NUMBER_PROBLEMS = {
    "float_number": "a float; numbers in parameters must be integers",
    "number_out_of_range": "an integer outside [-2^63, 2^64-1]",
}

_METHOD_RESULT_KEYS = {"outputs", "returns", "parameters", "dependencies"}


class Reject(Exception):
    """Raised by a checker to answer false, with a reason for the client."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = str(reason)


class CheckerFailed(Exception):
    """A checker raised, or returned something other than a bool: a bug in the contract, never a verdict."""


class RequestError(ValueError):
    """A checker request refused before any checker runs: `kind` is the error kind, `field` the path it names.

    Kinds: missing_field, wrong_type, float_number, number_out_of_range.
    """

    def __init__(self, kind: str, field: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.field = field


def validate_request(request) -> None:
    """Raise RequestError unless `request` has every field of a checker request, well typed, and integers only.

    Fields are checked in REQUEST_FIELDS order and dependencies depth first, so the
    first problem is the one reported; unknown extra fields are ignored. Then
    every number in the parameters (dependencies' too) must be an integer in
    [-2^63, 2^64-1] (`jsonvalue.number_error`), as in a transaction.
    """
    _validate_fields(request, "")
    _validate_numbers(request, "")


def _validate_fields(request, path: str) -> None:
    if not isinstance(request, dict):
        raise RequestError("wrong_type", path, f"`{path}` must be an object")
    if path and "dependencies" not in request:
        # A dependency inlined as Chainspace does, without dependencies of its own.
        request["dependencies"] = []
    for field, shape in REQUEST_FIELDS:
        where = f"{path}.{field}" if path else field
        if field not in request:
            raise RequestError("missing_field", where, f"missing field `{where}`")
        _validate_field(request[field], shape, where)


def _validate_field(value, shape: str, where: str) -> None:
    if shape == "string":
        if not isinstance(value, str):
            raise RequestError("wrong_type", where, f"`{where}` must be a string")
        return
    if not isinstance(value, list):
        raise RequestError("wrong_type", where, f"`{where}` must be a list")
    for index, item in enumerate(value):
        if shape == "strings" and not isinstance(item, str):
            raise RequestError("wrong_type", f"{where}[{index}]", f"`{where}[{index}]` must be a string")
        if shape == "requests":
            _validate_fields(item, f"{where}[{index}]")


def _validate_numbers(request: dict, path: str) -> None:
    prefix = f"{path}." if path else ""
    try:
        check_value(request["parameters"], f"{prefix}parameters")
    except JsonValueError as error:
        # From a JSON body only the number kinds can come (the parser refused the rest); a request built
        # in Python may also hold a lone surrogate or a non-JSON type.
        problem = _NUMBER_PROBLEMS.get(error.kind, error.message)
        raise RequestError(error.kind, error.path, f"`{error.path}`: {problem}") from None
    for index, dependency in enumerate(request["dependencies"]):
        _validate_numbers(dependency, f"{prefix}dependencies[{index}]")


def build_transaction(
    contract_id,
    method_id,
    inputs=(),
    reference_inputs=(),
    parameters=(),
    outputs=(),
    returns=(),
    dependencies=(),
) -> dict:
    """The envelope of one call: T with its eight fields, and the store of every value T reads.

    `inputs` and `reference_inputs` are Objects; `dependencies` are envelopes, whose
    transactions nest into T["dependencies"] and whose stores merge into this one.
    Raises TypeError for arguments of the wrong type, and TransactionError (a
    ValueError with the API's `kind`) for an envelope the ledger would refuse
    (`validate_envelope`), or an id given two different values.
    """
    inputs = [_as_object(item, "inputs") for item in inputs]
    reference_inputs = [_as_object(item, "reference_inputs") for item in reference_inputs]
    dependencies = list(dependencies)
    transaction = {
        "contractID": _text(contract_id, "contract_id"),
        "methodID": _text(method_id, "method_id"),
        "inputIDs": [item.id for item in inputs],
        "referenceInputIDs": [item.id for item in reference_inputs],
        "parameters": list(parameters),
        "returns": _texts(returns, "returns"),
        "outputs": _texts(outputs, "outputs"),
        "dependencies": [_envelope_part(dependency, "transaction") for dependency in dependencies],
    }
    store = {}
    for dependency in dependencies:
        for key, value in _envelope_part(dependency, "store").items():
            _put(store, key, value)
    for item in inputs + reference_inputs:
        _put(store, item.id, item.value)
    envelope = {"transaction": transaction, "store": store}
    # Fail here, where the caller can see why, rather than at the API: bad names and ids, floats, limits.
    validate_envelope(envelope)
    return envelope


def outputs(envelope: dict) -> list:
    """T's own outputs as Objects, with their ids (dependencies' outputs are theirs to list)."""
    if not isinstance(envelope, dict) or "transaction" not in envelope:
        message = f'an envelope is {{"transaction": T, "store": {{...}}}}, not {envelope!r:.80}'
        raise TransactionError("wrong_type", "envelope", message)
    transaction = envelope["transaction"]
    validate_transaction(transaction)
    tx_id = transaction_id(transaction)
    return [Object(object_id(tx_id, value, index), value) for index, value in enumerate(transaction["outputs"])]


def _as_object(item, what: str) -> Object:
    try:
        item_id, value = item
    except (TypeError, ValueError):
        raise TypeError(f"{what} must hold Objects (id, value), not {item!r}") from None
    if not isinstance(item_id, str) or not isinstance(value, str):
        raise TypeError(f"{what} must hold Objects whose id and value are strings, not {item!r}")
    return Object(item_id, value)


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {value!r}")
    return value


def _texts(values, what: str) -> list:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of strings, not one string")
    return [_text(value, f"each of {what}") for value in values]


def _envelope_part(envelope, part: str):
    if not isinstance(envelope, dict) or part not in envelope:
        raise TypeError(
            f'a dependency must be an envelope {{"transaction": T, "store": {{...}}}}, not {envelope!r:.80}'
        )
    return envelope[part]


def _put(store: dict, key: str, value: str) -> None:
    # One id, two values: the caller mixed up objects; the API would refuse it later, less clearly.
    if store.get(key, value) != value:
        raise ValueError(f"object {key} is given two different values")
    store[key] = value


class Contract:
    """One contract: its client methods (`@contract.method`) and its checkers (`@contract.checker`)."""

    def __init__(self, name: str):
        _check_name(name, "contract name")
        self.name = name
        self._methods = {}
        self._checkers = {}

    def __repr__(self):
        return f"Contract({self.name!r})"

    # -- client side ---------------------------------------------------------------------------

    def method(self, method_id: str):
        """Declare a client method: `f(inputs, reference_inputs, parameters, *private) -> dict`.

        `f` sees values (str) and returns {"outputs": [str], "returns"?: [str],
        "parameters"?: [...], "dependencies"?: [envelope]}. The decorated name becomes
        `build(inputs: [Object], reference_inputs: [Object], parameters, *private) -> envelope`.
        """
        _check_name(method_id, "method id")

        def decorate(function):
            @functools.wraps(function)
            def build(inputs=(), reference_inputs=(), parameters=(), *private):
                return self._build(method_id, function, inputs, reference_inputs, parameters, private)

            if method_id in self._methods:
                raise ValueError(f"{self.name}.{method_id} already has a client method")
            self._methods[method_id] = build
            return build

        return decorate

    def call(self, method_id: str, inputs=(), reference_inputs=(), parameters=(), *private) -> dict:
        """Build the envelope of `method_id`, as the decorated method would."""
        if method_id not in self._methods:
            raise KeyError(f"{self.name} has no client method {method_id!r}")
        return self._methods[method_id](inputs, reference_inputs, parameters, *private)

    def _build(self, method_id, function, inputs, reference_inputs, parameters, private) -> dict:
        inputs = [_as_object(item, "inputs") for item in inputs]
        reference_inputs = [_as_object(item, "reference_inputs") for item in reference_inputs]
        parameters = list(parameters)
        result = function(
            [item.value for item in inputs], [item.value for item in reference_inputs], list(parameters), *private
        )
        if not isinstance(result, dict) or "outputs" not in result:
            raise TypeError(f"client method {self.name}.{method_id} must return a dict with 'outputs'")
        unknown = sorted(set(result) - _METHOD_RESULT_KEYS)
        if unknown:
            raise TypeError(f"client method {self.name}.{method_id} returned unknown keys {unknown}")
        return build_transaction(
            self.name,
            method_id,
            inputs,
            reference_inputs,
            result.get("parameters", parameters),
            result["outputs"],
            result.get("returns", ()),
            result.get("dependencies", ()),
        )

    # -- server side ---------------------------------------------------------------------------

    def checker(
        self, method_id: str, *, inputs=None, reference_inputs=None, parameters=None, outputs=None, returns=None
    ):
        """Declare the checker of `method_id` ("*": of every method without its own).

        The function gets `(inputs, reference_inputs, parameters, outputs, returns,
        dependencies)` (values, and dependencies as checker requests) and returns
        True / False or raises Reject(reason). The keyword counts, when given, are
        required exactly before the function runs.
        """
        if method_id != WILDCARD:
            _check_name(method_id, "method id")
        counts = dict(
            zip(
                (field for field, _ in _COUNTED),
                (inputs, reference_inputs, parameters, outputs, returns),
            )
        )

        def decorate(function):
            if method_id in self._checkers:
                raise ValueError(f"{self.name}.{method_id} already has a checker")
            self._checkers[method_id] = (function, counts)
            return function

        return decorate

    @property
    def checker_methods(self) -> list:
        """The sorted method ids that have a checker ("*" included when there is a wildcard)."""
        return sorted(self._checkers)

    def checks(self, method_id: str) -> bool:
        """Whether a checker (its own or the wildcard) answers for `method_id`."""
        return method_id in self._checkers or WILDCARD in self._checkers

    def check(self, method_id: str, request: dict) -> tuple:
        """The verdict `(success, reason)` on a checker request; reason is None on success.

        Raises RequestError for a malformed request, LookupError for a method without
        a checker, CheckerFailed when the checker raises or returns a non-bool.
        """
        validate_request(request)
        return self.run_checker(method_id, request)

    def check_envelope(self, envelope: dict) -> tuple:
        """The verdict of this contract's checker on T of `envelope` (not on its dependencies): for tests."""
        request = checker_request(envelope)
        if request["contractID"] != self.name:
            raise ValueError(f"the transaction is for contract {request['contractID']!r}, not {self.name!r}")
        return self.check(request["methodID"], request)

    def run_checker(self, method_id: str, request: dict) -> tuple:
        """`check` on a request already validated (the server validates once, for its error statuses)."""
        if not self.checks(method_id):
            raise LookupError(f"{self.name} has no checker for {method_id!r}")
        function, counts = self._checkers.get(method_id) or self._checkers[WILDCARD]
        try:
            _require_counts(request, counts)
            verdict = function(
                request["inputs"],
                request["referenceInputs"],
                request["parameters"],
                request["outputs"],
                request["returns"],
                request["dependencies"],
            )
        except Reject as reject:
            return False, reject.reason
        except Exception as error:
            raise CheckerFailed(f"checker {self.name}.{method_id} raised {type(error).__name__}: {error}") from error
        # A truthy list or None is not a verdict: saying true by accident is how ledgers lose money.
        if not isinstance(verdict, bool):
            raise CheckerFailed(f"checker {self.name}.{method_id} returned {verdict!r:.80}, not True or False")
        return (True, None) if verdict else (False, f"rejected by {self.name}.{method_id}")


def _check_name(name, what: str) -> None:
    # The ledger's rule (validate.is_name): a name it refuses could never reach this checker.
    if not is_name(name):
        rule = f"1 to {NAME_CHARS_MAX} characters of A-Z a-z 0-9 _ . -, starting with a letter or digit"
        raise ValueError(f"a {what} is {rule}; not {name!r:.80}")


def _require_counts(request: dict, counts: dict) -> None:
    for field, label in _COUNTED:
        expected = counts[field]
        actual = len(request[field])
        require(expected is None or actual == expected, f"expected {expected} {label}, got {actual}")


# -- helpers for checkers ----------------------------------------------------------------------


def require(condition, reason: str) -> None:
    """Reject with `reason` unless `condition` holds."""
    if not condition:
        raise Reject(reason)


def is_int(value, low: int = INT64_MIN, high: int = INT64_MAX) -> bool:
    """Whether `value` is an integer (a bool is not) within [low, high]."""
    return type(value) is int and low <= value <= high


def load_canonical(value: str, what: str):
    """Parse a stored value, rejecting (with `what` in the reason) anything but canonical JSON.

    Requiring the canonical spelling, not just valid JSON, rules out duplicate keys,
    NaN and floats at once; reading it as serde_json does (`parse_json`: nesting,
    overflowing numbers) makes the Rust SDK answer the same for every value.
    """
    try:
        parsed = parse_json(value)
        canonical = canonical_json(parsed)
    except ValueError:
        raise Reject(f"{what} is not canonical JSON") from None
    require(canonical == value, f"{what} is not canonical JSON")
    return parsed


def require_keys(value, keys, what: str) -> None:
    """Reject unless `value` is a JSON object with exactly `keys`."""
    require(isinstance(value, dict), f"{what} must be a JSON object")
    require(set(value) == set(keys), f"{what} must have exactly the keys {sorted(keys)}")
