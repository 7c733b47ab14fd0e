"""Reading the context: ``var``, ``missing``, ``missing_some``.

``var`` is most of what a targeting rule does per call, so a constant path is split
once and compiled into a direct dict lookup (one or two levels get their own closures);
only arrays, strings and odd paths take the general walk. Lookups follow json-logic-js:
a key that is absent gives the default (null unless given), a key present with null gives
null, array and string items are reached by index and both have a ``length``.
"""

from __future__ import annotations

from typing import Any, Sequence

from .errors import Where
from .jsvalues import less_equal, to_string
from .nodes import (
    Arg,
    Compiler,
    Const,
    Evaluator,
    Node,
    all_const,
    as_function,
    expect_operands,
    is_bare,
)

_ABSENT = object()
FLAGD_PROPERTIES = ("$flagd.timestamp", "$flagd.flagKey")


def _member(data: Any, key: str) -> Any:
    """``data[key]`` in JavaScript, or ``_ABSENT`` where JavaScript gives undefined."""
    kind = type(data)
    if kind is dict:
        return data.get(key, _ABSENT)
    if kind is list or kind is str:
        if key == "length":
            return len(data)
        if key.isascii() and key.isdigit() and (key == "0" or key[0] != "0"):
            index = int(key)
            if index < len(data):
                return data[index]
    return _ABSENT


def lookup(data: Any, parts: Sequence[str], default: Any) -> Any:
    """Walk ``parts`` down from ``data``; ``default`` where the walk finds nothing."""
    for part in parts:
        if data is None:
            return default
        data = _member(data, part)
        if data is _ABSENT:
            return default
    return data


def split_path(key: Any) -> list[str] | None:
    """A ``var`` path as its parts; None for the whole data (``""`` or null)."""
    if key is None or key == "":
        return None
    return to_string(key).split(".")


def may_read_clock(key: Any) -> bool:
    """Whether looking ``key`` up may reach ``$flagd.timestamp``: the whole data, the whole
    ``$flagd`` object, or the timestamp (or something under it)."""
    parts = split_path(key)
    return parts is None or (parts[0] == "$flagd" and (len(parts) == 1 or parts[1] == "timestamp"))


def _constant_path(parts: list[str] | None, default_node: Node) -> Evaluator:
    """``var`` with a path known at compile time."""
    if parts is None:
        return lambda data: data
    if not isinstance(default_node, Const):
        default_of = default_node
        return lambda data: lookup(data, parts, default_of(data))
    default = default_node.value
    if len(parts) == 1:
        (key,) = parts

        def var_one(data: Any) -> Any:
            if type(data) is dict:
                value = data.get(key, _ABSENT)
                return default if value is _ABSENT else value
            return lookup(data, parts, default)

        return var_one
    if len(parts) == 2:
        outer, inner = parts

        def var_two(data: Any) -> Any:
            if type(data) is dict:
                middle = data.get(outer)
                if type(middle) is dict:
                    value = middle.get(inner, _ABSENT)
                    return default if value is _ABSENT else value
            return lookup(data, parts, default)

        return var_two
    return lambda data: lookup(data, parts, default)


def compile_var(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"var": path}`` or ``{"var": [path, default]}``."""
    # The schema refuses only the plain-string form; ["$flagd.x"] slips through it.
    name = args[0][0] if is_bare(args, path) else None
    if type(name) is str and name.startswith("$flagd.") and name not in FLAGD_PROPERTIES:
        c.problem(
            path,
            f"{name!r} is not a flagd property; flagd provides "
            + " and ".join(f'"{name}"' for name in FLAGD_PROPERTIES),
        )
    key_node = c.compile(*args[0]) if args else Const(None)
    default_node = c.compile(*args[1]) if len(args) > 1 else Const(None)
    if isinstance(key_node, Const):
        if may_read_clock(key_node.value):
            c.reads_clock = True
        return _constant_path(split_path(key_node.value), default_node)
    c.reads_clock = True  # a path computed at run time may name anything
    key_of, default_of = key_node, as_function(default_node)

    def var_dynamic(data: Any) -> Any:
        parts = split_path(key_of(data))  # type: ignore[operator]
        return data if parts is None else lookup(data, parts, default_of(data))

    return var_dynamic


def _is_missing(data: Any, key: Any) -> bool:
    parts = split_path(key)
    value = data if parts is None else lookup(data, parts, None)
    return value is None or value == ""


def _missing_keys(data: Any, values: Sequence[Any]) -> list[Any]:
    keys = values[0] if values and type(values[0]) is list else values
    return [key for key in keys if _is_missing(data, key)]


def _check_key_list(c: Compiler, raw: Any, path: Where, name: str) -> None:
    if type(raw) is not list or any(type(key) is not str for key in raw):
        c.problem(path, f"{name} takes an array of key strings, e.g. [\"email\", \"user.id\"]")


def compile_missing(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"missing": [key, ...]}`` -> the keys whose value is null, absent or ``""``."""
    if is_bare(args, path):
        _check_key_list(c, args[0][0], path, "missing")
    else:
        _check_key_list(c, [raw for raw, _ in args], path, "missing")
    nodes = [c.compile(raw, arg_path) for raw, arg_path in args]
    if all_const(nodes):
        values = [node.value for node in nodes]  # type: ignore[union-attr]
        _note_clock(c, values)
        return lambda data: _missing_keys(data, values)
    c.reads_clock = True
    functions = [as_function(node) for node in nodes]
    return lambda data: _missing_keys(data, [function(data) for function in functions])


def _note_clock(c: Compiler, values: Sequence[Any]) -> None:
    keys = values[0] if values and type(values[0]) is list else values
    if any(may_read_clock(key) for key in keys):
        c.reads_clock = True


def _missing_some(data: Any, need: Any, options: Any) -> list[Any]:
    if type(options) is not list:
        return []
    missing = _missing_keys(data, options)
    return [] if less_equal(need, len(options) - len(missing)) else missing


def compile_missing_some(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"missing_some": [need, [key, ...]]}`` -> [] when ``need`` keys are present."""
    expect_operands(c, args, path, "missing_some", 2, 2)
    if len(args) == 2:
        if type(args[0][0]) not in (int, float):
            c.problem(args[0][1], "missing_some needs a number of keys first, e.g. [1, [\"a\", \"b\"]]")
        _check_key_list(c, args[1][0], args[1][1], "missing_some")
    nodes = [c.compile(raw, arg_path) for raw, arg_path in args[:2]]
    nodes += [Const(None)] * (2 - len(nodes))
    if all_const(nodes):
        need_value, options_value = (node.value for node in nodes)  # type: ignore[union-attr]
        if type(options_value) is list:
            _note_clock(c, options_value)
        return lambda data: _missing_some(data, need_value, options_value)
    c.reads_clock = True
    need, options = (as_function(node) for node in nodes)
    return lambda data: _missing_some(data, need(data), options(data))
