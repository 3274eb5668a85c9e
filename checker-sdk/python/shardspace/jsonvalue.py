"""What a JSON value may hold, so that Python and Rust (serde_json) read and print it alike.

`parse_json` reads JSON text the way serde_json does (the checker server parses
request bodies with it); `check_value` is the one walk over a value that both
`encoding.canonical_json` and the checks of requests and envelopes use. Its
errors carry a `kind` (the error kinds of docs/checkers.md §2) and the path of
the offending part (`parameters[2].x`).
"""

import json
import math
import re

from .limits import INT64_MIN, JSON_NESTING_MAX, UINT64_MAX

# serde_json reads an integer literal beyond 64 bits as a float: one this large and integral is an
# integer out of range, not a fraction.
_FLOAT_INTEGER_MIN = 2.0**63
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Beyond this many bits an integer is shown by its size: printing it may be slow, or refused by Python.
_SHOWN_INTEGER_BITS_MAX = 256


class JsonValueError(ValueError):
    """A value that JSON, or the other SDK, cannot carry: `kind` says why, `path` where ("" for the whole)."""

    def __init__(self, kind: str, path: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.path = path
        self.message = message


def parse_json(data):
    """The value of the JSON text `data` (UTF-8 bytes, or str), read as serde_json reads it.

    Raises JsonValueError (kind malformed_json) for what serde_json refuses and
    Python's json would take: NaN and Infinity, a number that overflows a float
    (1e400, 400 digits), lone surrogates, nesting deeper than JSON_NESTING_MAX.
    The literal -0 becomes -0.0, a float, as in serde_json. Numbers are not
    range-checked here: see `check_value`.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float, parse_int=_parse_int)
    except UnicodeDecodeError:
        raise JsonValueError("malformed_json", "", "the text is not UTF-8") from None
    except RecursionError:
        raise JsonValueError("malformed_json", "", f"the text nests deeper than {JSON_NESTING_MAX} levels") from None
    except ValueError as error:
        raise JsonValueError("malformed_json", "", f"the text is not JSON: {error}") from None
    try:
        check_value(value, numbers=False, nesting_max=JSON_NESTING_MAX)
    except JsonValueError as error:
        raise JsonValueError("malformed_json", error.path, error.message) from None
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} overflows a 64-bit float")
    return value


def _parse_int(text: str):
    if text == "-0":
        return -0.0
    # float() first: it takes any length (int() refuses over 4300 digits), and says whether serde_json could.
    if math.isinf(float(text)):
        raise ValueError(f"the integer {text[:40]}... ({len(text)} characters) overflows a 64-bit float")
    return int(text)


def number_error(number) -> str | None:
    """The error kind of a number both SDKs cannot print alike, or None for an integer in range.

    Integers must lie in [-2^63, 2^64-1]. A float is `float_number`, unless it is
    integral and at least 2^63 in magnitude: that is how serde_json reads an
    integer literal beyond 64 bits (18446744073709551616, or 1e19), so it is
    `number_out_of_range`.
    """
    if isinstance(number, float):
        if math.isfinite(number) and number.is_integer() and abs(number) >= _FLOAT_INTEGER_MIN:
            return "number_out_of_range"
        return "float_number"
    if not INT64_MIN <= number <= UINT64_MAX:
        return "number_out_of_range"
    return None


def check_value(value, path: str = "", *, numbers: bool = True, nesting_max: int | None = None, nesting_base=0):
    """Raise JsonValueError at the first part of `value` (depth first) that JSON or the other SDK cannot carry.

    Refused: lone surrogates (`lone_surrogate`), non-string keys and non-JSON
    types (`wrong_type`), arrays and objects nested deeper than `nesting_max`
    (`too_deep`; `nesting_base` levels already enclose `value`), and, when
    `numbers`, what `number_error` refuses. Iterative: a deep value cannot exhaust
    Python's stack. Error paths start with `path`.
    """
    stack = [(value, nesting_base, None)]  # (part, arrays and objects around it, link to its path)
    while stack:
        part, depth, link = stack.pop()
        # bool before int: bool is a subclass of int, and true/false are fine.
        if part is None or isinstance(part, bool):
            continue
        if isinstance(part, (int, float)):
            kind = number_error(part) if numbers else None
            if kind is not None:
                raise _error(kind, path, link, _number_problem(kind, part))
            continue
        if isinstance(part, str):
            if _LONE_SURROGATE.search(part):
                raise _error("lone_surrogate", path, link, "holds a lone UTF-16 surrogate")
            continue
        if not isinstance(part, (list, tuple, dict)):
            raise _error("wrong_type", path, link, f"is a {type(part).__name__}, not a JSON value")
        depth += 1
        if nesting_max is not None and depth > nesting_max:
            raise _error("too_deep", path, link, f"nests arrays and objects deeper than {nesting_max} levels")
        if isinstance(part, dict):
            children = []
            for key, item in part.items():
                if not isinstance(key, str):
                    raise _error("wrong_type", path, link, f"has a key {key!r:.80} that is not a string")
                if _LONE_SURROGATE.search(key):
                    raise _error("lone_surrogate", path, link, "has a key holding a lone UTF-16 surrogate")
                children.append((item, depth, (link, key)))
        else:
            children = [(item, depth, (link, index)) for index, item in enumerate(part)]
        stack.extend(reversed(children))


def _number_problem(kind: str, number) -> str:
    if kind == "float_number":
        return f"is {number!r}, a float; only integers are allowed"
    if isinstance(number, float):
        return f"is {number!r}, an integer outside [-2^63, 2^64-1] (read as a float)"
    if abs(number).bit_length() > _SHOWN_INTEGER_BITS_MAX:
        return f"is an integer of {abs(number).bit_length()} bits, outside [-2^63, 2^64-1]"
    return f"is {number}, outside [-2^63, 2^64-1]"


def _error(kind: str, path: str, link, problem: str) -> JsonValueError:
    where = path_of(path, link)
    return JsonValueError(kind, where, f"{where or 'the value'} {problem}")


def path_of(path: str, link) -> str:
    """The path of a part from its link (parent link, key or index), under `path`."""
    keys = []
    while link is not None:
        link, key = link
        keys.append(key)
    for key in reversed(keys):
        path = join(path, key)
    return path


def join(path: str, key) -> str:
    """`path` followed by one step: `[3]` for an index, `.name` or `["odd key"]` for a key."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"
