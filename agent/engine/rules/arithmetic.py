"""Arithmetic: ``+``, ``-``, ``*``, ``/``, ``%``, ``min``, ``max``.

As in json-logic-js, ``+`` and ``*`` read their operands with ``parseFloat`` (so
``{"+": ["3.14"]}`` is 3.14 and unary ``+`` casts), while ``-``, ``/``, ``%``, ``min`` and
``max`` use ``Number()``. Division by zero gives an infinity rather than an exception,
as in JavaScript. Whole-number results stay ``int`` so they print and hash as integers.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from .errors import Where
from .jsvalues import (
    INF,
    NAN,
    integral,
    js_divide,
    js_remainder,
    parse_float,
    to_number,
)
from .nodes import Arg, Compiler, Node, eager, expect_operands


def _whole(number: int | float) -> int | float:
    return integral(number) if type(number) is float else number


def _add(*values: Any) -> int | float:
    total: int | float = 0
    for value in values:
        total += parse_float(value)
    return _whole(total)


def _multiply(*values: Any) -> Any:
    if not values:
        raise TypeError("* needs at least one operand")  # reduce of an empty array, in JS
    if len(values) == 1:
        return values[0]  # json-logic-js reduces without a start value: no cast
    return _whole(functools.reduce(lambda left, right: left * right, map(parse_float, values)))


def _subtract(*values: Any) -> int | float:
    if len(values) == 1:
        return -to_number(values[0])
    if not values:
        return NAN
    return _whole(to_number(values[0]) - to_number(values[1]))


def _divide(left: Any = None, right: Any = None) -> int | float:
    return js_divide(to_number(left), to_number(right))


def _remainder(left: Any = None, right: Any = None) -> int | float:
    return js_remainder(to_number(left), to_number(right))


def _extreme(pick: Any, empty: float) -> Any:
    """Build ``max``/``min``: NaN if any operand is not a number, as Math.max does."""

    def extreme(*values: Any) -> int | float:
        numbers = [to_number(value) for value in values]
        if not numbers:
            return empty
        if any(number != number for number in numbers):
            return NAN
        return _whole(pick(numbers))

    return extreme


def _variadic(name: str, impl: Any, low: int = 1, high: int | None = None) -> Any:
    """Build an operator that takes ``low..high`` operands and evaluates them all."""

    def compile_arithmetic(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
        expect_operands(c, args, path, name, low, high)
        limit = len(args) if high is None else high
        return eager(impl, [c.compile(raw, arg_path) for raw, arg_path in args[:limit]])

    return compile_arithmetic


def _divide_or_nan(impl: Any) -> Any:
    """``/`` and ``%`` with a missing operand: undefined is NaN."""

    def padded(*values: Any) -> int | float:
        if len(values) < 2:
            return NAN
        return impl(*values)

    return padded


compile_add = _variadic("+", _add)
compile_subtract = _variadic("-", _subtract)
compile_multiply = _variadic("*", _multiply, 2)
compile_divide = _variadic("/", _divide_or_nan(_divide), 2, 2)
compile_remainder = _variadic("%", _divide_or_nan(_remainder), 2, 2)
compile_max = _variadic("max", _extreme(max, -INF))
compile_min = _variadic("min", _extreme(min, INF))
