"""flagd's ``sem_ver`` operator: ``[version, op, version]`` with npm-style operators.

Versions are compared by semver 2.0 precedence (prerelease before release, build metadata
ignored). Like the flagd evaluators, a leading ``v``/``V`` is dropped and partial versions
are padded (``1.2`` -> ``1.2.0``), and a number is read as a version (``1.2`` the JSON
number). A literal version or operator is checked once, at compile time; a version that
only arrives with the context and does not parse makes the operator answer null, which
flagd turns into the default variant.
"""

from __future__ import annotations

import functools
import operator
import re
from typing import Any, Callable, Sequence

from .errors import Where
from .jsvalues import to_string
from .nodes import Arg, Compiler, Const, Node, as_function

_IDENT = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?\Z",
    re.ASCII,
)
_RELEASE = (1,)  # sorts after every prerelease key, which starts with 0

# A version's precedence key: (major, minor, patch, prerelease-key); build is dropped.
VersionKey = tuple[int, int, int, tuple[Any, ...]]


def parse_version(value: Any) -> VersionKey | None:
    """The precedence key of a version string or number, or None when it is not one."""
    kind = type(value)
    if kind is str:
        return _parse_cached(value) if len(value) <= _CACHED_LENGTH else _parse_text(value)
    if kind is int or kind is float:
        return _parse_cached(to_string(value))
    return None


def _parse_text(text: str) -> VersionKey | None:
    if text[:1] in ("v", "V"):
        text = text[1:]
    numeric = text.split("-", 1)[0].split("+", 1)[0]
    dots = numeric.count(".")
    if dots < 2:
        text = numeric + ".0" * (2 - dots) + text[len(numeric) :]
    match = _SEMVER.match(text)
    if match is None:
        return None
    major, minor, patch, prerelease = match.groups()
    if prerelease is None:
        pre_key: tuple[Any, ...] = _RELEASE
    else:
        pre_key = (0, *((0, int(i)) if i.isdigit() else (1, i) for i in prerelease.split(".")))
    return int(major), int(minor), int(patch), pre_key


# A fleet reports few distinct versions, so parses are cached; only short strings, so
# that contexts full of long junk cannot grow the cache beyond a few hundred kilobytes.
_CACHED_LENGTH = 64
_parse_cached = functools.lru_cache(maxsize=4096)(_parse_text)


def _same_major(left: VersionKey, right: VersionKey) -> bool:
    return left[0] == right[0]


def _same_minor(left: VersionKey, right: VersionKey) -> bool:
    return left[0] == right[0] and left[1] == right[1]


COMPARISONS: dict[str, Callable[[VersionKey, VersionKey], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "^": _same_major,
    "~": _same_minor,
}
_OPERATOR_LIST = ", ".join(f'"{name}"' for name in COMPARISONS)


def _version_side(c: Compiler, arg: Arg) -> Node:
    """Compile one version operand: a literal is parsed now, anything else per call."""
    raw, path = arg
    if isinstance(raw, dict):
        if next(iter(raw), None) != "var" or len(raw) != 1:
            c.problem(path, "a sem_ver version must be a version string or a {\"var\": ...}")
        node = c.compile(raw, path)
        if not isinstance(node, Const):
            return lambda data: parse_version(node(data))  # type: ignore[operator]
        raw = node.value
    key = parse_version(raw)
    if key is None or type(raw) is not str or _SEMVER.match(raw) is None:
        c.problem(
            path,
            f"{raw!r} is not a semantic version; expected MAJOR.MINOR.PATCH "
            "(optionally -prerelease and +build), e.g. \"1.2.3\"",
        )
    return Const(key)


def compile_sem_ver(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"sem_ver": [version, op, version]}`` -> bool, or null when it cannot compare."""
    if len(args) != 3:
        c.problem(path, f"sem_ver takes an array of 3 items [version, operator, version], got {len(args)}")
        return Const(None)
    (raw_op, op_path) = args[1]
    if type(raw_op) is not str or raw_op not in COMPARISONS:
        c.problem(op_path, f"{raw_op!r} is not a sem_ver operator; expected one of {_OPERATOR_LIST}")
        return Const(None)
    compare = COMPARISONS[raw_op]
    left, right = _version_side(c, args[0]), _version_side(c, args[2])
    if isinstance(left, Const) and isinstance(right, Const):
        if left.value is None or right.value is None:
            return Const(None)
        return Const(compare(left.value, right.value))
    if isinstance(right, Const):
        if right.value is None:
            return Const(None)
        fixed = right.value
        return lambda data: None if (key := left(data)) is None else compare(key, fixed)  # type: ignore[operator]
    left_fn, right_fn = as_function(left), as_function(right)

    def sem_ver(data: Any) -> bool | None:
        first, second = left_fn(data), right_fn(data)
        if first is None or second is None:
            return None
        return compare(first, second)

    return sem_ver

