"""A flag document's bytes to its JSON value, refusing what JSON parsers let through silently.

orjson decodes a flag file fast, but some documents it accepts must not be served as decoded:

* nesting deeper than :attr:`Limits.max_depth` (orjson reads 1,024 levels, but writes only
  254, and everything downstream of the parser must be able to encode what it was given);
* a key repeated in one object (orjson, like every JSON parser, keeps the last silently; a
  duplicated flag key would hide a flag);
* an integer outside 64 bits, which orjson turns into a float (``2**64`` would be served as
  ``1.8446744073709552e+19``);
* a document larger than :attr:`Limits.max_bytes`.

Checking all of that on the decoded value would walk every node of it in Python, which for a
10,000-flag file costs more than decoding it. Instead the text is reduced, at C speed, to what
lies outside its strings: its brackets (whose nesting is the depth) and its colons (one per
object member). The decoded value, encoded again by orjson, has one member fewer for each
one a duplicate key swallowed. Only a document that fails a check is
walked, by the slow path that finds where the problem is; a good one pays a few milliseconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import orjson

from agent.engine.formats.yaml import YamlProblem, is_yaml, load_yaml
from agent.engine.formats.yaml import problem as yaml_problem
from agent.engine.limits import Limits
from agent.engine.model import Problem
from agent.engine.rules.errors import Where, render
from protocol.messages import json_type


class FlagFileError(Exception):
    """A flag source that cannot be served; ``problems`` says every reason, with JSON paths."""

    def __init__(self, problems: tuple[Problem, ...] | list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


_BOM = b"\xef\xbb\xbf"
#: Every byte but the ones the structural checks read.
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}:')
_STRING = re.compile(rb'"[^"]*"')
_BRACKETS_AS_PARENS = bytes.maketrans(b"[]{}", b"()()")
#: Every digit becomes "0" and every other byte a space: 19 digits in a row are then one ``find``.
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_INTEGER = re.compile(rb"-?\d{19,}")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson keeps as an integer


def decode_document(data: bytes, source: str, limits: Limits) -> dict:
    """The document's JSON object, checked against ``limits`` and for silent losses.

    Raises:
        FlagFileError: the bytes are not a JSON object the agent can serve exactly; every
            problem names the JSON path (``$`` for the document as a whole).
    """
    def refuse(message: str, path: str = "$") -> FlagFileError:
        return FlagFileError([Problem(source, path, message)])

    if data.startswith(_BOM):
        data = data[3:]
    if len(data) > limits.max_bytes:
        raise refuse(f"the document is {len(data):,} bytes, more than the limit of {limits.max_bytes:,} "
                     "(the max-file-bytes setting)")
    if not data.strip():
        raise refuse("file is empty")
    if is_yaml(source):
        return _decode_yaml(data, source, limits)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if exc.msg == "depth limit exceeded":  # orjson stops at 1,024 levels, before any limit here
            raise refuse(f"nested more than {limits.max_depth} levels deep (the limit, the max-depth setting), at "
                         f"line {exc.lineno}, column {exc.colno}; flatten it") from None
        raise refuse(f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if type(doc) is not dict:
        raise refuse(f"a flag file must be a JSON object, got {json_type(doc)}")
    problems = structure_problems(data, doc, source, limits)
    if problems:
        raise FlagFileError(problems)
    return doc


def _decode_yaml(data: bytes, source: str, limits: Limits) -> dict:
    """A YAML document (its duplicate keys and non-JSON values are the YAML reader's to
    refuse), held to the same depth and the same exact integers as a JSON one."""
    try:
        doc = load_yaml(data, source)
    except YamlProblem as exc:
        raise FlagFileError([yaml_problem(source, exc)]) from None
    if type(doc) is not dict:
        raise FlagFileError([Problem(source, "$", f"a flag file must be a mapping, got {json_type(doc)}")])
    deep = too_deep(doc, limits.max_depth)
    if deep is not None:
        raise FlagFileError([Problem(source, deep, f"nested more than {limits.max_depth} levels deep (the limit, "
                                                   "the max-depth setting); flatten it")])
    problems = [Problem(source, path, _inexact_message(value)) for path, value in _large_integers(doc)]
    if problems:
        raise FlagFileError(problems)
    return doc


def _large_integers(value: Any) -> Iterator[tuple[str, int]]:
    """Where ``value`` (decoded) holds an integer outside what orjson can encode."""
    stack: list[tuple[Any, Where]] = [(value, "$")]
    while stack:
        node, where = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend((v, (where, k)) for k, v in reversed(node.items()))
        elif kind is list:
            stack.extend((v, (where, i)) for i, v in reversed(list(enumerate(node))))
        elif kind is int and not INT_MIN <= node <= INT_MAX:
            yield render(where), node


def _inexact_message(value: int) -> str:
    return (f"integer {value} does not fit in 64 bits ({INT_MIN} to {INT_MAX}) and would be served rounded; "
            "write it as a string")


def structure_problems(data: bytes, doc: Any, source: str, limits: Limits) -> list[Problem]:
    """What ``doc`` (``data`` as orjson decoded it) lost or holds beyond ``limits``."""
    text = _neutral_escapes(data)
    outside = _outside_strings(text)
    if nesting(outside, limits.max_depth) > limits.max_depth:
        path = too_deep(doc, limits.max_depth) or "$"
        return [Problem(source, path, f"nested more than {limits.max_depth} levels deep (the limit, the "
                                      "max-depth setting); flatten it")]
    duplicated = outside.count(b":") != members(doc)
    inexact = _inexact_integers(text)
    if not duplicated and not inexact:
        return []
    return list(_slow_problems(data, source, duplicated, inexact))


def members(doc: Any) -> int:
    """How many members the objects of ``doc`` hold in all (the colons of its JSON text that
    are not inside a string)."""
    return _outside_strings(_neutral_escapes(orjson.dumps(doc))).count(b":")


def _neutral_escapes(data: bytes) -> bytes:
    r"""``data`` with ``\\`` and ``\"`` replaced by two harmless bytes (offsets are kept)."""
    if b"\\" not in data:
        return data
    return data.replace(b"\\\\", b"__").replace(b'\\"', b"__")


def _outside_strings(text: bytes) -> bytes:
    """The brackets and colons of ``text`` that are not inside a string."""
    # Two adjacent quotes have nothing between them once every other byte is gone, and
    # dropping them leaves every other byte inside or outside a string as it was.
    reduced = text.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in reduced:
        reduced = _STRING.sub(b"", reduced)
    return reduced


def nesting(outside: bytes, limit: int) -> int:
    """How deeply the brackets in ``outside`` nest, counting no further than ``limit + 1``.

    Each ``replace`` removes the innermost pairs only (it does not look again at what its
    own removals join), so the number of rounds until nothing is left is the depth.
    """
    brackets = outside.translate(_BRACKETS_AS_PARENS, b":")
    depth = 0
    while brackets and depth <= limit:
        brackets = brackets.replace(b"()", b"")
        depth += 1
    return depth


def too_deep(value: Any, limit: int, root: str = "$") -> str | None:
    """The path of the first container found ``limit + 1`` levels down in ``value`` (which is
    level 1, at ``root``), or None when ``value`` nests no deeper than ``limit``."""
    stack: list[tuple[Any, Where, int]] = [(value, root, 1)]
    while stack:
        node, where, depth = stack.pop()
        if depth > limit:
            return render(where)
        if type(node) is dict:
            stack.extend((v, (where, k), depth + 1) for k, v in reversed(node.items()) if type(v) in (dict, list))
        elif type(node) is list:
            stack.extend((v, (where, i), depth + 1) for i, v in reversed(list(enumerate(node)))
                         if type(v) in (dict, list))
    return None


def _inexact_integers(text: bytes) -> list[bytes]:
    """Integer literals outside strings that orjson cannot keep as integers."""
    if b"0" * 19 not in text.translate(_DIGITS_TO_ZERO):
        return []
    found = []
    quotes, scanned = 0, 0
    for match in _LONG_INTEGER.finditer(text):
        start, end = match.span()
        quotes += text.count(b'"', scanned, start)
        scanned = start
        if quotes % 2 or text[start - 1:start] in (b".", b"e", b"E", b"+", b"-") or text[end:end + 1] in (b".", b"e", b"E"):
            continue  # inside a string, or part of a float
        if not INT_MIN <= int(match.group()) <= INT_MAX:
            found.append(match.group())
    return found



class _Members(dict):
    """An object decoded by the slow path, with the keys its text repeated."""

    __slots__ = ("repeated",)


class _Inexact(int):
    """An integer literal outside what orjson keeps exact, found by the slow path."""

    __slots__ = ()


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    obj = _Members(pairs)
    obj.repeated = [k for k, n in _counts(pairs).items() if n > 1] if len(obj) != len(pairs) else []
    return obj


def _counts(pairs: list[tuple[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key, _ in pairs:
        counts[key] = counts.get(key, 0) + 1
    return counts


def _integer(text: str) -> int:
    value = int(text)
    return value if INT_MIN <= value <= INT_MAX else _Inexact(value)


def _slow_problems(data: bytes, source: str, duplicated: bool, inexact: list[bytes]) -> Iterator[Problem]:
    """Decode again, slowly, to say where the duplicate keys and inexact integers are."""
    doc = json.loads(data.decode("utf-8", "surrogatepass"), object_pairs_hook=_pairs, parse_int=_integer)
    found = 0
    stack: list[tuple[Any, Where]] = [(doc, "$")]
    while stack:
        node, where = stack.pop()
        if type(node) is _Members:
            for key in node.repeated:
                found += 1
                what = "flag key" if where == ("$", "flags") else "key"
                yield Problem(source, render((where, key)), f"duplicate {what} {key!r}: an object must not repeat a "
                                                             "key (JSON readers keep only the last one); remove or "
                                                             "rename the others")
            stack.extend((v, (where, k)) for k, v in reversed(node.items()))
        elif type(node) is list:
            stack.extend((v, (where, i)) for i, v in reversed(list(enumerate(node))))
        elif type(node) is _Inexact:
            found += 1
            yield Problem(source, render(where), _inexact_message(int(node)))
    if not found:  # the fast check and the slow one disagree: say so rather than serve a guess
        what = "a duplicate key" if duplicated else f"an inexact integer ({inexact[0].decode()})"
        yield Problem(source, "$", f"the document holds {what} that could not be located")
