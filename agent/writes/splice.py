"""Write an edited flag document back into its original text, touching only the edited flags.

Re-encoding a whole document after a one-flag change would reflow everything a person
formatted by hand (inline arrays, compact rules, number spellings) and make the diff of a
kill-switch flip hundreds of lines long. Instead the original text is scanned for where each
flag of the ``flags`` container (or of the top level, in the flat simple format) starts and
ends, and only the spans of the flags that changed are rewritten; a new flag is appended after
the last one with the same separator and indentation.

Anything this does not expect (duplicate keys, a change outside the flags, several kinds of
edit at once, an empty container) returns None, and the caller encodes the whole document.
The result is always decoded again and compared, order included, with the edited document.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring
from typing import Any

import attrs

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@attrs.frozen
class _Member:
    """One member of an object (or element of an array) and where its text is."""

    key: Any
    lead: str  # the whitespace before it
    start: int  # where its key (or, in an array, its value) starts
    colon: str  # the text between key and value (empty in an array)
    value_start: int
    value_end: int


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()


def _scan(text: str, i: int, *, until: str | None = None) -> list[_Member]:
    """The members of the object or array whose opening bracket is at ``i`` (up to the member
    named ``until``, whose value is then not read: its end is left at its start)."""
    closing = "}" if text[i] == "{" else "]"
    members: list[_Member] = []
    after = i + 1
    i = _skip(text, after)
    if text[i] == closing:
        return members
    while True:
        lead, start = text[after:i], i
        if closing == "}":
            if text[i] != '"':
                raise ValueError("expected a key")
            key, key_end = scanstring(text, i + 1)
            i = _skip(text, key_end)
            if text[i] != ":":
                raise ValueError("expected ':'")
            i = _skip(text, i + 1)
            colon = text[key_end:i]
            if key == until:
                members.append(_Member(key, lead, start, colon, i, i))
                return members
        else:
            key, colon = None, ""
        value, end = _DECODER.raw_decode(text, i)
        if closing == "]":
            key = value.get("key") if type(value) is dict else None
        members.append(_Member(key, lead, start, colon, i, end))
        i = _skip(text, end)
        if text[i] == closing:
            return members
        if text[i] != ",":
            raise ValueError("expected ',' or a closing bracket")
        after = i + 1
        i = _skip(text, after)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON texts: key order and number spelling count (dict equality ignores order)."""
    return a is b or json.dumps(a) == json.dumps(b)


def _render(value: Any, lead: str, indent: int | str | None, ensure_ascii: bool) -> str:
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)
    if indent is None:
        return text
    return text.replace("\n", "\n" + lead.rpartition("\n")[2])


def _container(doc: dict) -> Any:
    return doc if "flags" not in doc else doc["flags"]


def splice(text: str, old: dict, new: dict, *, indent: int | str | None, ensure_ascii: bool) -> str | None:
    """``text`` (which decodes to ``old``) edited to decode to ``new``, or None when this cannot
    be done by rewriting flags alone."""
    try:
        result = _splice(text, old, new, indent, ensure_ascii)
        if result is None or not _same(json.loads(result), new):
            return None
        return result
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        return None


def _splice(text: str, old: dict, new: dict, indent: int | str | None, ensure_ascii: bool) -> str | None:
    flat = "flags" not in old
    if flat != ("flags" not in new) or (not flat and {k: v for k, v in old.items() if k != "flags"}
                                       != {k: v for k, v in new.items() if k != "flags"}):
        return None
    top = _skip(text, 0)
    if flat:
        members = _scan(text, top)
    else:
        where = _scan(text, top, until="flags")[-1]
        if where.key != "flags":
            return None
        members = _scan(text, where.value_start)
    old_items, new_items = _items(_container(old)), _items(_container(new))
    keys = [m.key for m in members]
    if not members or len(set(keys)) != len(keys) or keys != [k for k, _ in old_items]:
        return None
    new_values = dict(new_items)
    removed = [i for i, k in enumerate(keys) if k not in new_values]
    kept = [k for k in keys if k in new_values]
    known = set(keys)
    added = [(k, v) for k, v in new_items if k not in known]
    if ([k for k, _ in new_items] != kept + [k for k, _ in added] or (removed and added)
            or len(removed) + len(added) > 1 or not kept):
        return None
    edits: list[tuple[int, int, str]] = []
    old_values = dict(old_items)
    for m in members:
        if m.key in new_values and not _same(new_values[m.key], old_values[m.key]):
            edits.append((m.value_start, m.value_end, _render(new_values[m.key], m.lead, indent, ensure_ascii)))
    if removed:
        i = removed[0]
        if i > 0:
            edits.append((members[i - 1].value_end, members[i].value_end, ""))
        else:
            edits.append((members[0].start, members[1].start, ""))
    last = members[-1]
    for key, value in added:
        head = "" if key is None or not isinstance(_container(new), dict) else json.dumps(key, ensure_ascii=ensure_ascii) + last.colon
        edits.append((last.value_end, last.value_end, "," + last.lead + head + _render(value, last.lead, indent, ensure_ascii)))
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _items(container: Any) -> list[tuple[Any, Any]]:
    if isinstance(container, dict):
        return list(container.items())
    return [(v.get("key") if type(v) is dict else None, v) for v in container]
