"""Edit a decoded flag document for ``set`` and ``delete`` without changing its character.

Pure functions, no I/O: the writer hands in the decoded JSON and the layout read from the
original text, and gets back the edited document and its bytes. What is kept:

* the format: a flagd document stays flagd (``flags`` map or array: edited in place), a simple
  document stays simple when the change fits it;
* key order: existing flags and their existing keys stay where they are, new ones are appended;
* the text: only the changed flag's text is rewritten (:mod:`agent.writes.splice`), in the indentation
  found in the original (2 spaces when none is found); everything else stays as written. When
  that cannot be done the whole document is encoded in that indentation (a one-line file stays
  one line), and a trailing newline stays (or stays absent) either way.

Choices, for the places where the format and the change do not fit each other:

* ``definition`` (a flagd flag) into a simple ``flags`` map: the flag is written in flagd form
  next to the simple ones. The parser reads each flag of a ``flags`` map by its own keys, so
  this is a valid flagsock file; the other flags are not touched. A top-level ("simple-flat")
  file has no room for a flagd flag: INVALID_FLAG saying so.
* simple fields into a flagd document: the flagd equivalent is written (boolean variants
  ``on``/``off``, ``defaultVariant``, and for a partial rollout a targeting rule made of an
  ``in`` on the allowed users and a ``fractional`` split over 100) that evaluates exactly like
  the simple flag would: same value, variant and reason for every context. The one case that
  cannot be exact is a partial rollout when the agent buckets flagd rules with ``--fractional
  v1`` or ``v3`` (simple flags always bucket like v2): refused with INVALID_FLAG.
* simple fields patch: fields left out of the request keep the flag's current values (read
  back from a flagd flag when it has the shape this module writes; otherwise no rollout and
  no allowed users). In flagd form a switched-off flag has no place to keep its rollout.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from agent.writes.splice import splice
from agent.writes.yamledit import YamlLayout, render_yaml
from protocol.errors import FlagNotFound, InvalidFlag

SIMPLE_FIELDS = ("enabled", "rollout_percentage", "allowed_users")
SIMPLE_KEYS = frozenset({"enabled", "rollout_percentage", "rollout", "allowed_users"})
FLAGD_KEYS = frozenset({"state", "variants", "defaultVariant", "targeting"})
#: The variants a simple flag has (the wire contract: a boolean flag with ``on`` and ``off``).
_ON_OFF = {"on": True, "off": False}
_USER = {"var": "targetingKey"}


@attrs.frozen
class Layout:
    """How the original text was laid out: ``indent`` as ``json.dumps`` takes it."""

    indent: int | str | None = 2
    final_newline: bool = True
    ensure_ascii: bool = False


DEFAULT_LAYOUT = Layout()
_INDENTED = re.compile(r"[\[{]\s*?\n([ \t]+)\S")


def detect_layout(text: str) -> Layout:
    """Read the indentation unit, final newline and escaping style of a JSON text."""
    body = text.strip()
    final_newline = text.endswith("\n")
    ascii_escaped = body.isascii() and "\\u" in body
    if body and "\n" not in body:
        return Layout(indent=None, final_newline=final_newline, ensure_ascii=ascii_escaped)
    found = _INDENTED.search(body)
    indent: int | str = 2
    if found:
        unit = found.group(1)
        indent = len(unit) if set(unit) == {" "} else unit
    return Layout(indent=indent, final_newline=final_newline, ensure_ascii=ascii_escaped)


def encode(doc: Any, layout: Layout) -> bytes:
    text = json.dumps(doc, indent=layout.indent, ensure_ascii=layout.ensure_ascii)
    if layout.final_newline:
        text += "\n"
    return text.encode("utf-8")


def render(text: str | None, old: dict, new: dict, layout: Layout | YamlLayout) -> bytes:
    """The bytes of ``new``: ``text`` with only the changed flags rewritten where that can be
    done (see :mod:`agent.writes.splice`), else the whole document encoded in ``layout``; a YAML
    file keeps its comments and layout (:mod:`agent.writes.yamledit`)."""
    if isinstance(layout, YamlLayout):
        return render_yaml(text, old, new)
    if text is not None:
        spliced = splice(text, old, new, indent=layout.indent, ensure_ascii=layout.ensure_ascii)
        if spliced is not None:
            return spliced.encode("utf-8")
    return encode(new, layout)


def entry_kind(raw: Any) -> str:
    """``simple`` or ``flagd``, as the parser reads a flag of a ``flags`` map."""
    if type(raw) is dict and raw.keys() & SIMPLE_KEYS and not raw.keys() & FLAGD_KEYS:
        return "simple"
    return "flagd"


def document_format(doc: dict) -> str:
    """``flagd``, ``simple``, ``simple-flat`` or ``empty`` (a ``flags`` map with no flags yet)."""
    if "flags" not in doc:
        return "simple-flat"
    flags = doc["flags"]
    if type(flags) is list or "$evaluators" in doc:
        return "flagd"
    if type(flags) is dict:
        if not flags:
            return "flagd" if "flagd" in str(doc.get("$schema", "")) else "empty"
        return "simple" if all(entry_kind(v) == "simple" for v in flags.values()) else "flagd"
    return "flagd"  # malformed; validation of the result says what is wrong


# --- locating a flag ------------------------------------------------------------------------

class _Slots:
    """The flags of a document as a key -> raw mapping, whatever the document's shape."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.flat = "flags" not in doc
        self.array = not self.flat and type(doc["flags"]) is list
        if not self.flat and type(doc["flags"]) not in (dict, list):
            raise InvalidFlag(f"the file's \"flags\" member is {type(doc['flags']).__name__}, not an object or an array; fix the file first")

    def _array_index(self, key: str) -> int | None:
        for i, raw in enumerate(self.doc["flags"]):
            if type(raw) is dict and raw.get("key") == key:
                return i
        return None

    def get(self, key: str) -> Any:
        if self.array:
            i = self._array_index(key)
            return None if i is None else self.doc["flags"][i]
        container = self.doc if self.flat else self.doc["flags"]
        return container.get(key)

    def put(self, key: str, raw: dict) -> None:
        if self.array:
            i = self._array_index(key)
            if i is None:
                self.doc["flags"].append(raw)
            else:
                self.doc["flags"][i] = raw
            return
        container = self.doc if self.flat else self.doc["flags"]
        container[key] = raw  # an existing key keeps its place

    def remove(self, key: str) -> bool:
        if self.array:
            i = self._array_index(key)
            if i is None:
                return False
            del self.doc["flags"][i]
            return True
        container = self.doc if self.flat else self.doc["flags"]
        if key not in container or (self.flat and key == "$schema"):
            return False
        del container[key]
        return True


def _in_order(old: Mapping[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new``, with the keys ``old`` already had first and in ``old``'s order."""
    if not isinstance(old, Mapping):
        return new
    ordered = {k: new[k] for k in old if k in new}
    ordered.update((k, v) for k, v in new.items() if k not in ordered)
    return ordered


# --- the edits --------------------------------------------------------------------------------

@attrs.frozen
class SetChange:
    """A validated ``set``: either a flagd ``definition`` or some of the simple fields."""

    flag: str
    definition: dict | None = None
    simple: Mapping[str, Any] = attrs.field(factory=dict)


def _copy_for_edit(doc: dict) -> dict:
    """A copy of ``doc`` whose flags container may be changed; the flags themselves are shared
    (an edit replaces a flag, never changes one in place), which also lets the splice tell
    untouched flags by identity."""
    new = dict(doc)
    if type(new.get("flags")) in (dict, list):
        new["flags"] = copy.copy(new["flags"])
    return new


def apply_delete(doc: dict, flag: str, *, where: str) -> dict:
    """A copy of ``doc`` without ``flag``; FlagNotFound (naming ``where``) when it has none."""
    new = _copy_for_edit(doc)
    if not _Slots(new).remove(flag):
        raise FlagNotFound(f"flag {flag!r} is not in {where}; nothing was deleted")
    return new


def apply_set(doc: dict, change: SetChange, *, fractional: str, where: str) -> dict:
    """A copy of ``doc`` with ``change`` applied, in the document's own format."""
    new = _copy_for_edit(doc)
    slots = _Slots(new)
    fmt = document_format(new)
    old = slots.get(change.flag)
    if change.definition is not None:
        if slots.flat:
            raise InvalidFlag(
                f"{where} keeps its flags at the top level (the simple format), which has no room for a "
                "flagd definition; send enabled / rollout_percentage / allowed_users instead, or move the "
                "file to the flagd format ({\"flags\": {...}})"
            )
        raw = {k: v for k, v in change.definition.items() if not (k == "key" and not slots.array)}
        if slots.array:
            raw = {"key": change.flag, **{k: v for k, v in raw.items() if k != "key"}}
        slots.put(change.flag, _in_order(old, raw))
        return new
    simple_home = slots.flat or fmt in ("simple", "empty") or (old is not None and entry_kind(old) == "simple")
    if simple_home and not slots.array:
        slots.put(change.flag, _patched_simple(old, change, siblings=_siblings(slots, change.flag)))
    else:
        slots.put(change.flag, _in_order(old, _flagd_from_simple(old, change, fractional)))
    return new


def _siblings(slots: _Slots, flag: str) -> list[Any]:
    container = slots.doc if slots.flat else slots.doc["flags"]
    return [v for k, v in container.items() if k not in (flag, "$schema")]


def _patched_simple(old: Any, change: SetChange, *, siblings: list[Any]) -> dict:
    if type(old) is dict and entry_kind(old) == "simple":
        entry = dict(old)
    else:
        entry = {}
        if siblings and all(type(s) is dict and "name" in s for s in siblings):
            entry["name"] = change.flag
    for field, value in change.simple.items():
        if field == "rollout_percentage" and "rollout" in entry and "rollout_percentage" not in entry:
            field = "rollout"  # keep the file's own word for it
        entry[field] = value
    return entry


def simple_state(raw: Any) -> dict[str, Any] | None:
    """The simple fields of a flag: read from a simple flag, or from a flagd flag of the shape
    :func:`flagd_equivalent` writes; None for any other flag."""
    if type(raw) is not dict:
        return None
    if entry_kind(raw) == "simple":
        pct = raw.get("rollout_percentage", raw.get("rollout"))
        return {"enabled": raw.get("enabled"), "rollout_percentage": pct, "allowed_users": list(raw.get("allowed_users") or [])}
    if raw.get("state") != "ENABLED" or raw.get("variants") != _ON_OFF:
        return None
    default = raw.get("defaultVariant")
    targeting = raw.get("targeting")
    if not targeting:
        if default not in ("on", "off"):
            return None
        return {"enabled": default == "on", "rollout_percentage": None, "allowed_users": []}
    users: list[str] = []
    rule = targeting
    if "if" in targeting:
        parts = targeting["if"]
        if (type(parts) is not list or len(parts) != 3 or parts[1] != "on" or type(parts[0]) is not dict
                or type(parts[0].get("in")) is not list or len(parts[0]["in"]) != 2 or parts[0]["in"][0] != _USER):
            return None
        users, rule = list(parts[0]["in"][1]), parts[2]
    buckets = rule.get("fractional") if type(rule) is dict and len(rule) == 1 else None
    if default != "off" or type(buckets) is not list or not buckets:
        return None
    weights = {}
    for bucket in buckets:
        if type(bucket) is not list or len(bucket) != 2 or bucket[0] not in ("on", "off") or type(bucket[1]) is not int:
            return None
        weights[bucket[0]] = bucket[1]
    if sum(weights.values()) != 100:
        return None
    return {"enabled": True, "rollout_percentage": weights.get("on", 0), "allowed_users": users}


def _flagd_from_simple(old: Any, change: SetChange, fractional: str) -> dict:
    if type(old) is dict and entry_kind(old) == "flagd":
        variants = old.get("variants")
        if type(variants) is dict and variants and not all(type(v) is bool for v in variants.values()):
            raise InvalidFlag(
                f"flag {change.flag!r} has non-boolean variants ({', '.join(variants)}); the simple fields "
                "would turn it into a boolean flag and break its callers. Send a full \"definition\" instead"
            )
    state = {"enabled": False, "rollout_percentage": None, "allowed_users": []}
    state.update(simple_state(old) or {})
    state.update(change.simple)
    flag = flagd_equivalent(change.flag, state["enabled"], state["rollout_percentage"],
                            state["allowed_users"] or [], fractional=fractional)
    if type(old) is dict:
        for kept in ("key", "metadata"):
            if kept in old:
                flag[kept] = old[kept]
    return flag


def flagd_equivalent(flag: str, enabled: bool, rollout: float | None, users: list[str], *, fractional: str) -> dict:
    """The flagd flag that answers exactly like the simple flag (value, variant and reason).

    The simple rollout puts a user in iff ``bucket < rollout`` with an integer bucket 0-99,
    which is ``bucket < ceil(rollout)``: a ``fractional`` split of 100 with ``ceil(rollout)``
    for ``on`` buckets identically under v2 (flag key + targetingKey, same hash). The allow
    list goes first; an empty user id never matches in the simple format, so it is left out.

    Raises:
        InvalidFlag: a partial rollout under ``--fractional v1`` or ``v3``, which bucket differently.
    """
    out: dict[str, Any] = {"state": "ENABLED", "variants": dict(_ON_OFF)}
    allowed = [u for u in dict.fromkeys(users) if u]
    if not enabled or rollout is None or rollout >= 100 or (rollout <= 0 and not allowed):
        out["defaultVariant"] = "on" if enabled and (rollout is None or rollout >= 100) else "off"
        return out
    if fractional != "v2":
        raise InvalidFlag(
            f"a {rollout}% rollout of {flag!r} cannot be written to this flagd-format file exactly: the agent "
            f"buckets flagd rules with --fractional {fractional}, simple rollouts with v2, so users would "
            "move between on and off. Send a \"definition\" with your own fractional rule instead"
        )
    on = math.ceil(rollout)
    split = [[name, weight] for name, weight in (("on", on), ("off", 100 - on)) if weight > 0]
    rule: dict[str, Any] = {"fractional": split}
    if allowed:
        rule = {"if": [{"in": [dict(_USER), allowed]}, "on", rule]}
    out["defaultVariant"] = "off"
    out["targeting"] = rule
    return out

