"""What a transaction or an envelope alone can prove before it is sent: the twin of `core/src/validate.rs`.

`validate_envelope` checks an envelope {"transaction": T, "store": {id: value}}
as the Rust `Envelope::validate` does, with the limits of `limits`, raising
TransactionError whose `kind` is the API's error kind. `build_transaction`
calls it, so that a client learns what is wrong before the API says so;
`encoding` uses the shape checks and the id and name rules.
"""

import json
import re

from .jsonvalue import JsonValueError, check_value
from .limits import (
    DEPENDENCIES_MAX,
    DEPENDENCY_DEPTH_MAX,
    ENVELOPE_BYTES_MAX,
    INPUTS_MAX,
    JSON_NESTING_MAX,
    NAME_CHARS_MAX,
    OUTPUTS_MAX,
    REFERENCES_MAX,
    VALUE_BYTES_MAX,
)

# The eight fields of a transaction T, all present, in the order we validate them.
TRANSACTION_FIELDS = (
    "contractID",
    "methodID",
    "inputIDs",
    "referenceInputIDs",
    "parameters",
    "returns",
    "outputs",
    "dependencies",
)
ENVELOPE_FIELDS = ("transaction", "store")

# Contract and method names become a checker's URL path: short, path-safe, not starting with punctuation.
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{NAME_CHARS_MAX - 1}}}")
_LOWER_HEX = re.compile(r"[0-9a-f]*")
ID_HEX_CHARS = 64

# Counted lists of one transaction: (field, limit, error kind, what the message calls them).
_COUNTED = (
    ("inputIDs", INPUTS_MAX, "too_many_inputs", "inputs"),
    ("referenceInputIDs", REFERENCES_MAX, "too_many_references", "references"),
    ("outputs", OUTPUTS_MAX, "too_many_outputs", "outputs"),
    ("dependencies", DEPENDENCIES_MAX, "too_many_dependencies", "dependencies"),
)


class TransactionError(ValueError):
    """A transaction or envelope the ledger would refuse: `kind` is the API's error kind, `path` names the part."""

    def __init__(self, kind: str, path: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.path = path
        self.message = message


def is_name(name) -> bool:
    """Whether `name` is a valid contract or method name: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def is_lower_hex(text, length: int) -> bool:
    """Whether `text` is exactly `length` lowercase hex digits (ids, keys, signatures have one spelling only)."""
    return isinstance(text, str) and len(text) == length and _LOWER_HEX.fullmatch(text) is not None


def check_id(text, path: str) -> None:
    """Raise TransactionError (bad_id) unless `text` is an id: 64 lowercase hex digits."""
    if not is_lower_hex(text, ID_HEX_CHARS):
        raise TransactionError("bad_id", path, f"{path} must be {ID_HEX_CHARS} lowercase hex digits, not {text!r:.80}")


def validate_transaction(transaction, path: str = "transaction", *, nesting_base: int = 0) -> None:
    """Raise TransactionError (naming the field's path) unless T has exactly the eight fields, well typed.

    Kinds: wrong_type, unknown_field, missing_field, bad_id; for parameters,
    lone_surrogate and wrong_type from `check_value`, and malformed_json when
    they nest deeper than a JSON text may (`nesting_base` levels enclose T).
    Limits, names and numbers are `validate_envelope`'s. Dependencies are
    checked depth first, without recursion.
    """
    stack = [(transaction, path, nesting_base + 1)]  # (node, its path, its JSON nesting level)
    while stack:
        node, where, level = stack.pop()
        _check_node_shape(node, where, level)
        dependencies = [
            (dependency, f"{where}.dependencies[{index}]", level + 2)
            for index, dependency in enumerate(node["dependencies"])
        ]
        stack.extend(reversed(dependencies))


def _check_node_shape(node, path: str, level: int) -> None:
    # T's lists are one level inside T: past the limit, the API could not even parse the text.
    if level + 1 > JSON_NESTING_MAX:
        raise TransactionError("malformed_json", path, f"{path} nests deeper than {JSON_NESTING_MAX} JSON levels")
    if not isinstance(node, dict):
        raise TransactionError("wrong_type", path, f"{path} must be an object, not {type(node).__name__}")
    extra = sorted(map(str, set(node) - set(TRANSACTION_FIELDS)))
    if extra:
        message = f"{path} has unknown fields {extra}; a transaction has exactly {list(TRANSACTION_FIELDS)}"
        raise TransactionError("unknown_field", path, message)
    for field in TRANSACTION_FIELDS:
        if field not in node:
            raise TransactionError("missing_field", f"{path}.{field}", f"{path}.{field} is missing")
    for field in ("contractID", "methodID"):
        _check_text(node[field], f"{path}.{field}")
    for field in TRANSACTION_FIELDS[2:]:
        if not isinstance(node[field], list):
            raise TransactionError("wrong_type", f"{path}.{field}", f"{path}.{field} must be a list")
    for field in ("inputIDs", "referenceInputIDs"):
        for index, item in enumerate(node[field]):
            check_id(item, f"{path}.{field}[{index}]")
    for field in ("returns", "outputs"):
        for index, item in enumerate(node[field]):
            _check_text(item, f"{path}.{field}[{index}]")
    try:
        check_value(
            node["parameters"], f"{path}.parameters", numbers=False, nesting_max=JSON_NESTING_MAX, nesting_base=level
        )
    except JsonValueError as error:
        # Too deep for JSON: the API's parser would refuse the text, so it is malformed JSON there too.
        kind = "malformed_json" if error.kind == "too_deep" else error.kind
        raise TransactionError(kind, error.path, error.message) from None


def _check_text(value, path: str) -> None:
    if not isinstance(value, str):
        raise TransactionError("wrong_type", path, f"{path} must be a string, not {type(value).__name__}")
    try:
        check_value(value, path)
    except JsonValueError as error:
        raise TransactionError(error.kind, error.path, error.message) from None


def validate_envelope(envelope) -> None:
    """Raise TransactionError unless the ledger would take `envelope`, checking in the Rust order.

    First the shape (wrong_type, missing_field, unknown_field, bad_id), then the
    encoded size (envelope_too_large), the dependency depth
    (dependencies_too_deep), each transaction depth first: its names (bad_name),
    counts (too_many_inputs / references / outputs / dependencies), output sizes
    (value_too_large) and parameters' numbers (float_number,
    number_out_of_range); then objects named twice (duplicate_input,
    input_also_reference), and last the store (missing_from_store,
    unexpected_in_store, value_too_large).
    """
    _check_envelope_shape(envelope)
    transaction, store = envelope["transaction"], envelope["store"]
    _check_size(envelope)
    depth = dependency_depth(transaction)
    if depth > DEPENDENCY_DEPTH_MAX:
        message = f"the dependencies of transaction nest {depth} deep; the limit is {DEPENDENCY_DEPTH_MAX}"
        raise TransactionError("dependencies_too_deep", "transaction", message)
    for node, path in _nodes(transaction):
        _check_node_limits(node, path)
    _check_objects_named_once(transaction)
    _check_store(transaction, store)


def _check_envelope_shape(envelope) -> None:
    if not isinstance(envelope, dict):
        raise TransactionError("wrong_type", "envelope", 'an envelope is an object {"transaction": T, "store": {...}}')
    extra = sorted(map(str, set(envelope) - set(ENVELOPE_FIELDS)))
    if extra:
        raise TransactionError("unknown_field", "envelope", f"the envelope has unknown fields {extra}")
    for field in ENVELOPE_FIELDS:
        if field not in envelope:
            raise TransactionError("missing_field", field, f"the envelope has no {field}")
    # The envelope is level 1 of its JSON text, so T is level 2.
    validate_transaction(envelope["transaction"], nesting_base=1)
    store = envelope["store"]
    if not isinstance(store, dict):
        message = f"store must be an object {{id: value}}, not {type(store).__name__}"
        raise TransactionError("wrong_type", "store", message)
    for key, value in store.items():
        check_id(key, f"store.{key!s:.80}")
        _check_text(value, f"store.{key}")


def _check_size(envelope: dict) -> None:
    try:
        text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return  # an integer too long for Python to print: the number check names it
    size = len(text.encode("utf-8"))
    if size > ENVELOPE_BYTES_MAX:
        message = f"the envelope is {size} bytes; the limit is {ENVELOPE_BYTES_MAX}"
        raise TransactionError("envelope_too_large", "envelope", message)


def dependency_depth(transaction: dict) -> int:
    """How deep dependencies nest: 0 for a transaction without any, else 1 + the deepest dependency's."""
    # Post-order without recursion: a node's depth once all its dependencies have theirs.
    depths = {}
    stack = [(transaction, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            depths[id(node)] = max((1 + depths[id(child)] for child in node["dependencies"]), default=0)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in node["dependencies"])
    return depths[id(transaction)]


def _nodes(transaction: dict):
    """(node, path) of T and every dependency, depth first, T first."""
    stack = [(transaction, "transaction")]
    while stack:
        node, path = stack.pop()
        yield node, path
        children = [(child, f"{path}.dependencies[{index}]") for index, child in enumerate(node["dependencies"])]
        stack.extend(reversed(children))


def _check_node_limits(node: dict, path: str) -> None:
    for field in ("contractID", "methodID"):
        if not is_name(node[field]):
            message = (
                f"{path}.{field} is {node[field]!r:.80}: names are 1 to {NAME_CHARS_MAX} characters of "
                "A-Z a-z 0-9 _ . -, starting with a letter or digit"
            )
            raise TransactionError("bad_name", f"{path}.{field}", message)
    for field, limit, kind, label in _COUNTED:
        count = len(node[field])
        if count > limit:
            raise TransactionError(kind, path, f"{path} has {count} {label}; the limit is {limit}")
    for index, value in enumerate(node["outputs"]):
        _check_value_size(value, f"{path}.outputs[{index}]")
    for index, parameter in enumerate(node["parameters"]):
        try:
            check_value(parameter, f"{path}.parameters[{index}]")
        except JsonValueError as error:
            raise TransactionError(error.kind, error.path, error.message) from None


def _check_value_size(value: str, path: str) -> None:
    size = len(value.encode("utf-8"))
    if size > VALUE_BYTES_MAX:
        raise TransactionError("value_too_large", path, f"{path} is {size} bytes; the limit is {VALUE_BYTES_MAX}")


def _check_objects_named_once(transaction: dict) -> None:
    # One transaction cannot consume an object twice, nor hold a shared and an exclusive lock on it at once.
    inputs, references = set(), set()
    for node, path in _nodes(transaction):
        for index, item in enumerate(node["inputIDs"]):
            if item in inputs:
                message = f"object {item} is an input twice (again at {path}.inputIDs[{index}])"
                raise TransactionError("duplicate_input", f"{path}.inputIDs[{index}]", message)
            inputs.add(item)
        references.update(node["referenceInputIDs"])
    both = sorted(inputs & references)
    if both:
        message = f"object {both[0]} is both an input and a reference"
        raise TransactionError("input_also_reference", "transaction", message)


def _check_store(transaction: dict, store: dict) -> None:
    read = set()
    for node, _ in _nodes(transaction):
        read.update(node["inputIDs"], node["referenceInputIDs"])
    for item in sorted(read):
        if item not in store:
            raise TransactionError("missing_from_store", "store", f"the store has no value for object {item}")
    for item in sorted(store):
        if item not in read:
            message = f"the store holds object {item}, which the transaction does not name"
            raise TransactionError("unexpected_in_store", "store", message)
        _check_value_size(store[item], f"store.{item}")
