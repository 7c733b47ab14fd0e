"""JavaScript value semantics: number parsing and printing, the base of ``cat`` and ``==``."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.rules.jsvalues import loose_equals, number_to_string, parse_float, to_number


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1.5e-6, "0.0000015"),
        (0.000001, "0.000001"),
        (123e-20, "1.23e-18"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (-0.0, "0"),
        (100.0, "100"),
        (-1234.5678, "-1234.5678"),
        (2.0**53, "9007199254740992"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (math.nan, "NaN"),
    ],
)
def test_floats_print_as_javascript_prints_them(number: float, text: str) -> None:
    assert number_to_string(number) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_printed_floats_read_back_to_the_same_number(number: float) -> None:
    assert float(number_to_string(number)) == number


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (" 12 ", 12),
        ("", 0),
        ("  ", 0),
        ("0x1A", 26),
        ("0b101", 5),
        ("1e3", 1000),
        ("-1.5", -1.5),
        (".5", 0.5),
        ("Infinity", math.inf),
        (None, 0),
        (True, 1),
        ([], 0),
        (["7"], 7),
    ],
)
def test_number_conversion_follows_javascript_number(value: object, number: float) -> None:
    assert to_number(value) == number


@pytest.mark.parametrize("value", ["1_000", "inf", "nan", "12px", "-0x10", [1, 2], {}])
def test_number_conversion_gives_nan_where_javascript_does(value: object) -> None:
    assert math.isnan(to_number(value))


def test_parse_float_reads_the_leading_number() -> None:
    assert parse_float("12px") == 12
    assert parse_float("  3.5e2x") == 350
    assert parse_float("1e") == 1
    assert math.isnan(parse_float("px"))
    assert math.isnan(parse_float(None))
    assert math.isnan(parse_float(True))


def test_loose_equality_table() -> None:
    assert loose_equals("1", 1) and loose_equals(1, "1")
    assert loose_equals(True, "1") and loose_equals("1", True)
    assert loose_equals([1, 2], "1,2") and loose_equals("1,2", [1, 2])
    assert loose_equals([0], False)
    assert not loose_equals(None, 0) and not loose_equals(0, None)
    assert not loose_equals({}, "x")
    assert loose_equals({}, "[object Object]")
    assert not loose_equals(math.nan, math.nan)
