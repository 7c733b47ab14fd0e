"""Array operators: ``map``, ``filter``, ``reduce``, ``all``, ``none``, ``some``, ``merge``, ``in``.

The logic given to ``map``/``filter``/``all``/``none``/``some`` runs with each item as its
data, and ``reduce``'s with ``{"current": item, "accumulator": value}``: compiling it once
as an ordinary node and calling it with the item gives exactly that scoping.

``in`` against a literal list of strings (or of numbers) becomes a frozenset membership
test. That is safe because JSON Logic's ``in`` is ``indexOf``, i.e. strict equality:
only a value of the same kind can match, which the closure checks first.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .errors import Where
from .jsvalues import strict_equals, to_string, truthy
from .nodes import Arg, Compiler, Const, Node, as_function, eager, expect_operands


def _scoped(c: Compiler, args: Sequence[Arg], path: Where, name: str, high: int = 2) -> tuple[Callable, Callable]:
    """Compile ``[items, logic]``: the items in the current scope, the logic per item."""
    expect_operands(c, args, path, name, high, high)
    items = as_function(c.compile(*args[0])) if args else (lambda _data: None)
    logic = as_function(c.compile(*args[1])) if len(args) > 1 else (lambda _data: None)
    return items, logic


def compile_map(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"map": [items, logic]}`` -> the logic's value for each item ([] for a non-array)."""
    items, logic = _scoped(c, args, path, "map")
    return lambda data: [logic(item) for item in values] if type(values := items(data)) is list else []


def compile_filter(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"filter": [items, logic]}`` -> the items for which the logic is truthy."""
    items, logic = _scoped(c, args, path, "filter")
    return lambda data: [item for item in values if truthy(logic(item))] if type(values := items(data)) is list else []


def compile_all(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"all": [items, logic]}``; false for an empty (or non-) array, as JSON Logic says."""
    items, logic = _scoped(c, args, path, "all")

    def all_items(data: Any) -> bool:
        values = items(data)
        if type(values) is not list or not values:
            return False
        return all(truthy(logic(item)) for item in values)

    return all_items


def _any_item(items: Callable, logic: Callable, data: Any) -> bool:
    values = items(data)
    return type(values) is list and any(truthy(logic(item)) for item in values)


def compile_some(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"some": [items, logic]}``: at least one item passes."""
    items, logic = _scoped(c, args, path, "some")
    return lambda data: _any_item(items, logic, data)


def compile_none(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"none": [items, logic]}``: no item passes (true for an empty array)."""
    items, logic = _scoped(c, args, path, "none")
    return lambda data: not _any_item(items, logic, data)


def compile_reduce(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"reduce": [items, logic, initial]}``, the logic seeing ``current``/``accumulator``."""
    items, logic = _scoped(c, args, path, "reduce", 3)
    initial = as_function(c.compile(*args[2])) if len(args) > 2 else (lambda _data: None)

    def reduce_items(data: Any) -> Any:
        accumulator = initial(data)
        values = items(data)
        if type(values) is not list:
            return accumulator
        for item in values:
            accumulator = logic({"current": item, "accumulator": accumulator})
        return accumulator

    return reduce_items


def _merge(*values: Any) -> list[Any]:
    merged: list[Any] = []
    for value in values:
        if type(value) is list:
            merged.extend(value)
        else:
            merged.append(value)
    return merged


def compile_merge(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"merge": [a, b, ...]}``: arrays flattened one level, other values appended."""
    expect_operands(c, args, path, "merge")
    return eager(_merge, [c.compile(raw, arg_path) for raw, arg_path in args])


def contains(needle: Any, haystack: Any) -> bool:
    """JSON Logic ``in``: substring of a non-empty string, or strict member of an array."""
    kind = type(haystack)
    if kind is str:
        return haystack != "" and to_string(needle) in haystack
    if kind is list:
        return any(strict_equals(needle, item) for item in haystack)
    return False


_NUMBER_TYPES = (int, float)


def _literal_set_test(needle: Node, haystack: list[Any]) -> Node | None:
    """``in`` against a literal list of only strings or only numbers, as a set lookup."""
    if not haystack:
        return Const(False)
    if all(type(item) is str for item in haystack):
        strings = frozenset(haystack)
        return lambda data: type(value := needle(data)) is str and value in strings  # type: ignore[operator]
    if all(type(item) in _NUMBER_TYPES and item == item for item in haystack):
        numbers = frozenset(haystack)
        return lambda data: type(value := needle(data)) in _NUMBER_TYPES and value in numbers  # type: ignore[operator]
    return None


def compile_in(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"in": [needle, haystack]}``."""
    expect_operands(c, args, path, "in", 2, 2)
    nodes = [c.compile(raw, arg_path) for raw, arg_path in args[:2]]
    nodes += [Const(None)] * (2 - len(nodes))
    needle, haystack = nodes
    if not isinstance(needle, Const) and isinstance(haystack, Const):
        if type(haystack.value) is list:
            fast = _literal_set_test(needle, haystack.value)
            if fast is not None:
                return fast
        elif type(haystack.value) is str and haystack.value:
            text = haystack.value
            return lambda data: to_string(needle(data)) in text  # type: ignore[operator]
    return eager(contains, nodes)
