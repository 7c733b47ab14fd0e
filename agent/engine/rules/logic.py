"""Control flow and comparison: ``if``, ``and``, ``or``, ``!``, ``!!``, equality, ordering.

``if`` conditions that are constant are decided at compile time, so a rule like
``{"if": [true, "a", "b"]}`` costs nothing per call. ``and``/``or`` return the deciding
operand, not a bool, as JSON Logic does. Equality and ordering use JavaScript's rules
(``jsvalues``); comparing against a constant string skips the coercion machinery
whenever the other side turns out to be a string too.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

from .errors import Where
from .jsvalues import (
    NAN,
    greater_equal,
    greater_than,
    less_equal,
    less_than,
    loose_equals,
    strict_equals,
    truthy,
)
from .nodes import (
    Arg,
    Compiler,
    Const,
    Evaluator,
    Node,
    OpCompiler,
    as_function,
    eager,
    expect_operands,
    fold,
)


def compile_if(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"if": [cond, then, cond2, then2, ..., else?]}``; a missing else is null."""
    expect_operands(c, args, path, "if")
    nodes = [c.compile(raw, arg_path) for raw, arg_path in args]
    branches: list[tuple[Node, Node]] = []
    index = 0
    otherwise: Node = Const(None)
    while index < len(nodes) - 1:
        condition, then = nodes[index], nodes[index + 1]
        index += 2
        if not isinstance(condition, Const):
            branches.append((condition, then))
        elif truthy(condition.value):
            otherwise = then
            break
    else:
        if index == len(nodes) - 1:
            otherwise = nodes[index]
    if not branches:
        return otherwise
    else_function = as_function(otherwise)
    if len(branches) == 1:
        ((condition, then),) = branches
        then_function = as_function(then)
        return lambda data: (
            then_function(data) if truthy(condition(data)) else else_function(data)  # type: ignore[operator]
        )
    pairs = [(condition, as_function(then)) for condition, then in branches]

    def if_chain(data: Any) -> Any:
        for condition, then_function in pairs:
            if truthy(condition(data)):  # type: ignore[operator]
                return then_function(data)
        return else_function(data)

    return if_chain


def _and(*values: Any) -> Any:
    value = None
    for value in values:
        if not truthy(value):
            return value
    return value


def _or(*values: Any) -> Any:
    value = None
    for value in values:
        if truthy(value):
            return value
    return value


def _short_circuit(name: str, stop_when: bool, combine: Callable[..., Any]) -> OpCompiler:
    """Build ``and`` (stops at the first falsy operand) or ``or`` (at the first truthy)."""

    def compile_short_circuit(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
        expect_operands(c, args, path, name)
        nodes = [c.compile(raw, arg_path) for raw, arg_path in args]
        folded = fold(combine, nodes)
        if folded is not None:
            return folded
        functions = [as_function(node) for node in nodes]
        if len(functions) == 2:
            first, second = functions

            def two(data: Any) -> Any:
                value = first(data)
                return value if truthy(value) is stop_when else second(data)

            return two

        def many(data: Any) -> Any:
            value = None
            for function in functions:
                value = function(data)
                if truthy(value) is stop_when:
                    return value
            return value

        return many

    return compile_short_circuit


compile_and = _short_circuit("and", False, _and)
compile_or = _short_circuit("or", True, _or)


def _unary(name: str, impl: Callable[[Any], bool]) -> OpCompiler:
    """Build ``!``/``!!``: the first operand, with or without the array around it."""

    def compile_unary(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
        # No operand check: flagd's schema accepts any operand list here (as a literal array).
        if not args:
            return Const(impl(None))
        return eager(impl, [c.compile(*args[0])])

    return compile_unary


compile_not = _unary("!", lambda value: not truthy(value))
compile_truthy = _unary("!!", truthy)


def _equals_constant_string(subject: Evaluator, text: str, loose: bool, negate: bool) -> Evaluator:
    """``x == "text"``: a string ``x`` is compared directly, anything else coerced."""
    if not loose:
        if negate:
            return lambda data: subject(data) != text
        return lambda data: subject(data) == text

    def equals(data: Any) -> bool:
        value = subject(data)
        result = value == text if type(value) is str else loose_equals(value, text)
        return result is not negate

    return equals


def _equality(name: str, equals: Callable[[Any, Any], bool], negate: bool) -> OpCompiler:
    """Build ``==``, ``!=``, ``===`` or ``!==``."""
    loose = equals is loose_equals
    impl = (lambda left, right: not equals(left, right)) if negate else equals

    def compile_equality(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
        expect_operands(c, args, path, name, 2, 2)
        nodes = [c.compile(raw, arg_path) for raw, arg_path in args[:2]]
        if len(nodes) < 2:
            if not loose:  # nothing but undefined is === undefined
                return Const(negate)
            nodes += [Const(None)] * (2 - len(nodes))
        left, right = nodes
        if isinstance(left, Const) and not isinstance(right, Const):
            left, right = right, left
        if not isinstance(left, Const) and isinstance(right, Const) and type(right.value) is str:
            return _equals_constant_string(left, right.value, loose, negate)
        return eager(impl, [left, right])

    return compile_equality


compile_loose_equals = _equality("==", loose_equals, False)
compile_loose_not_equals = _equality("!=", loose_equals, True)
compile_strict_equals = _equality("===", strict_equals, False)
compile_strict_not_equals = _equality("!==", strict_equals, True)


def _ordering_against_constant(
    fast: Callable[[Any, Any], bool], compare: Callable[[Any, Any], bool], subject: Evaluator, constant: Any
) -> Evaluator:
    """``x < 10`` or ``x < "m"``: a value of the constant's kind is compared natively."""
    if type(constant) is str:
        return lambda data: fast(value, constant) if type(value := subject(data)) is str else compare(value, constant)

    def ordered(data: Any) -> bool:
        value = subject(data)
        kind = type(value)
        if kind is int or kind is float:
            return fast(value, constant)
        return compare(value, constant)

    return ordered


def _ordering(
    name: str, compare: Callable[[Any, Any], bool], fast: Callable[[Any, Any], bool], between: bool
) -> OpCompiler:
    """Build ``<``, ``<=`` (which also take 3 operands, "between") or ``>``, ``>=``.

    ``fast`` is Python's operator, which agrees with JavaScript's for two numbers (NaN
    included) or two strings; ``compare`` is the full JavaScript comparison.
    """
    high = 3 if between else 2

    def compile_ordering(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
        expect_operands(c, args, path, name, 2, high)
        nodes = [c.compile(raw, arg_path) for raw, arg_path in args[:high]]
        nodes += [Const(NAN)] * (2 - len(nodes))  # a missing operand is undefined: never ordered
        if len(nodes) == 3:
            return eager(lambda low, middle, top: compare(low, middle) and compare(middle, top), nodes)
        left, right = nodes
        if not isinstance(left, Const) and isinstance(right, Const) and type(right.value) in _NATIVE:
            return _ordering_against_constant(fast, compare, left, right.value)
        return eager(compare, nodes)

    return compile_ordering


_NATIVE = (int, float, str)
compile_less = _ordering("<", less_than, operator.lt, True)
compile_less_equal = _ordering("<=", less_equal, operator.le, True)
compile_greater = _ordering(">", greater_than, operator.gt, False)
compile_greater_equal = _ordering(">=", greater_equal, operator.ge, False)
