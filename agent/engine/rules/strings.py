"""String operators: JSON Logic's ``cat`` and ``substr``, flagd's ``starts_with``/``ends_with``.

``cat`` and ``substr`` stringify as JavaScript does (``true`` -> ``"true"``, ``1.0`` ->
``"1"``). flagd's string comparisons answer null, not false, for a non-string operand or
the wrong number of operands, so that the flag falls back to its default variant instead
of looking up a ``"false"`` variant.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from .errors import Where
from .jsvalues import INF, less_than, to_number, to_string
from .nodes import (
    Arg,
    Compiler,
    Const,
    Node,
    OpCompiler,
    as_function,
    eager,
    expect_operands,
    fold,
)

_ABSENT = object()  # an operand the rule left out (JavaScript's undefined)


def _text(value: Any) -> str:
    return value if type(value) is str else to_string(value)


def _cat_pair(left: Node, right: Node) -> Node:
    """Two operands, the common ``cat`` (e.g. flag key + user id): no join, no packing."""
    if isinstance(left, Const):
        prefix = to_string(left.value)
        return lambda data: prefix + _text(right(data))  # type: ignore[operator]
    if isinstance(right, Const):
        suffix = to_string(right.value)
        return lambda data: _text(left(data)) + suffix  # type: ignore[operator]

    def cat_pair(data: Any) -> str:
        first, second = left(data), right(data)  # type: ignore[operator]
        return (first if type(first) is str else to_string(first)) + (
            second if type(second) is str else to_string(second)
        )

    return cat_pair


def compile_cat(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"cat": [a, b, ...]}`` -> the operands' strings joined with no separator."""
    expect_operands(c, args, path, "cat")
    nodes = [c.compile(raw, arg_path) for raw, arg_path in args]
    folded = fold(lambda *values: "".join(map(to_string, values)), nodes)
    if folded is not None:
        return folded
    if len(nodes) == 2:
        return _cat_pair(*nodes)
    functions = [as_function(node) for node in nodes]
    return lambda data: "".join([_text(function(data)) for function in functions])


def _to_integer(value: Any) -> int | float:
    """ECMAScript ToIntegerOrInfinity."""
    number = to_number(value)
    if number != number:
        return 0
    if number in (INF, -INF):
        return number
    return math.trunc(number)


def _js_substr(text: str, start: Any, length: Any = _ABSENT) -> str:
    """ECMAScript ``String.prototype.substr(start, length)``."""
    size = len(text)
    begin = _to_integer(start)
    if begin < 0:
        begin = max(size + begin, 0)
    begin = int(min(begin, size))
    count = size - begin if length is _ABSENT else _to_integer(length)
    count = int(min(max(count, 0), size - begin))
    return text[begin : begin + count]


def substr(source: Any, start: Any = None, end: Any = _ABSENT) -> str:
    """json-logic-js ``substr``: a negative length stops that many characters from the end."""
    text = to_string(source)
    if end is not _ABSENT and less_than(end, 0):
        rest = _js_substr(text, start)
        return _js_substr(rest, 0, len(rest) + to_number(end))
    return _js_substr(text, start, end)


def compile_substr(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"substr": [string, start, length?]}``."""
    expect_operands(c, args, path, "substr", 2, 3)
    return eager(substr, [c.compile(raw, arg_path) for raw, arg_path in args[:3]])


def _string_test(name: str, test: Callable[[str, str], bool], affix_name: str) -> OpCompiler:
    """Build the compile function of ``starts_with``/``ends_with``."""

    def compile_string_test(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
        if len(args) != 2:
            c.problem(path, f"{name} takes an array of 2 operands [string, {affix_name}], got {len(args)}")
            return Const(None)
        nodes = []
        for raw, arg_path in args:
            if type(raw) is not str and type(raw) is not dict:
                c.problem(arg_path, f"{name} compares strings; expected a string or an expression, got {raw!r}")
            nodes.append(c.compile(raw, arg_path))

        def compare(text: Any, affix: Any) -> bool | None:
            if type(text) is str and type(affix) is str:
                return test(text, affix)
            return None

        folded = fold(compare, nodes)
        if folded is not None:
            return folded
        subject, affix = nodes
        if isinstance(affix, Const) and type(affix.value) is str:
            fixed = affix.value
            return lambda data: (
                test(text, fixed) if type(text := subject(data)) is str else None  # type: ignore[operator]
            )
        return eager(compare, nodes)

    return compile_string_test


compile_starts_with = _string_test("starts_with", str.startswith, "prefix")
compile_ends_with = _string_test("ends_with", str.endswith, "suffix")
