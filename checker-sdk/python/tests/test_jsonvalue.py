"""JSON read as serde_json reads it, and the one number rule (docs/checkers.md §1, §2)."""

import math

import pytest

from shardspace import canonical_json
from shardspace.jsonvalue import JsonValueError, check_value, number_error, parse_json
from shardspace.limits import INT64_MIN, JSON_NESTING_MAX, UINT64_MAX


def nested_arrays(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    "text",
    [
        "[NaN]",
        "[Infinity]",
        "[-Infinity]",
        '{"a": NaN}',
        "[1e400]",
        "[1E400]",
        "[-1e400]",
        "[" + "9" * 400 + "]",
        "[-" + "9" * 400 + "]",
        "[" + "1" * 5000 + "]",  # beyond Python's 4300-digit int limit: refused for the float overflow first
        nested_arrays(JSON_NESTING_MAX + 1),
        '{"a":' * (JSON_NESTING_MAX + 1) + "1" + "}" * (JSON_NESTING_MAX + 1),
        "[" * 100_000,
        '"\\ud800"',
        '{"\\udc00": 1}',
        "[1] [2]",
        "",
    ],
    ids=lambda text: text[:20],
)
def test_parse_json_refuses_what_serde_json_refuses(text):
    with pytest.raises(JsonValueError) as error:
        parse_json(text.encode())
    assert error.value.kind == "malformed_json"


def test_parse_json_refuses_bytes_that_are_not_utf8():
    with pytest.raises(JsonValueError, match="not UTF-8"):
        parse_json(b"\xff[]")


def test_parse_json_takes_127_levels_counting_the_outermost_as_one():
    assert parse_json(nested_arrays(JSON_NESTING_MAX)) is not None
    deepest = '{"a":' * JSON_NESTING_MAX + "1" + "}" * JSON_NESTING_MAX
    assert parse_json(deepest) is not None


def test_parse_json_reads_numbers_as_serde_json_does():
    value = parse_json("[-0, 0, 1e308, 18446744073709551616, -9223372036854775809, 1.5, " + "9" * 300 + "]")
    negative_zero, zero, big_float, two_to_64, below_min, fraction, long_integer = value
    assert isinstance(negative_zero, float) and math.copysign(1.0, negative_zero) == -1.0
    assert zero == 0 and isinstance(zero, int)
    assert big_float == 1e308 and fraction == 1.5
    # Integers Python can hold as such stay integers; the number rule then refuses them as out of range.
    assert two_to_64 == 2**64 and below_min == -(2**63) - 1 and long_integer == int("9" * 300)


@pytest.mark.parametrize(
    "number, kind",
    [
        (0, None),
        (INT64_MIN, None),
        (UINT64_MAX, None),
        (UINT64_MAX + 1, "number_out_of_range"),
        (INT64_MIN - 1, "number_out_of_range"),
        (1.5, "float_number"),
        (1.0, "float_number"),
        (-0.0, "float_number"),
        (9.2e18, "float_number"),  # integral, but below 2^63: a float someone meant
        (2.0**63, "number_out_of_range"),
        (-(2.0**63), "number_out_of_range"),
        (1e19, "number_out_of_range"),
        (float(2**64), "number_out_of_range"),
        (math.inf, "float_number"),
        (math.nan, "float_number"),
    ],
)
def test_number_rule(number, kind):
    assert number_error(number) == kind


@pytest.mark.parametrize(
    "value, kind, path",
    [
        ([1e19], "number_out_of_range", "[0]"),
        ({"x": -0.0}, "float_number", "x"),
        ([{"y": [2.0**64]}], "number_out_of_range", "[0].y[0]"),
        ([2**64], "number_out_of_range", "[0]"),
    ],
)
def test_canonical_json_applies_the_number_rule(value, kind, path):
    with pytest.raises(JsonValueError) as error:
        canonical_json(value)
    assert (error.value.kind, error.value.path) == (kind, path)
    assert str(error.value).startswith(kind + ":")


def test_check_value_names_the_path_under_a_prefix():
    with pytest.raises(JsonValueError) as error:
        check_value([1, {"odd key": [True, 0.5]}], "parameters")
    assert error.value.path == 'parameters[1]["odd key"][1]'


def test_check_value_walks_deep_values_without_recursion():
    deep = [1.5]
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(JsonValueError) as error:
        check_value(deep)
    assert error.value.kind == "float_number"
    with pytest.raises(JsonValueError) as error:
        check_value(deep, nesting_max=JSON_NESTING_MAX)
    assert error.value.kind == "too_deep"


def test_check_value_shows_a_huge_integer_by_its_size():
    with pytest.raises(JsonValueError, match="bits"):
        check_value([10**5000])
