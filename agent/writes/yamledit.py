"""Change a YAML flag file and keep what a person wrote: comments, key order, quoting, layout.

The change is computed on plain values (the same edit functions as for JSON), then only the
differences are applied to the round-trip document ruamel.yaml loaded, so every comment and
every untouched line stays as it was.
"""

from __future__ import annotations

import io
from typing import Any

import attrs


@attrs.frozen
class YamlLayout:
    """Marks a document to be written back as YAML (the text itself carries the layout)."""


YAML_LAYOUT = YamlLayout()


def _round_trip() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, order and quoting are kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line a person wrote
    return yaml


def render_yaml(text: str | None, old: dict, new: dict) -> bytes:
    """``text`` (the file as read; None for a new file) with the changes from ``old`` to ``new``."""
    yaml = _round_trip()
    if text is None or not text.strip():
        document: Any = {}
        old = {}
    else:
        document = yaml.load(text)
    _apply(document, old, new)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue().encode("utf-8")


def _apply(target: Any, old: Any, new: dict) -> None:
    """Make the mapping ``target`` (which reads as ``old``) read as ``new``, touching only what differs."""
    for key in [k for k in target if k not in new]:
        _drop_comment_above(target, key)
        del target[key]
    for key, value in new.items():
        before = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
        if before == value and key in target:
            continue
        current = target.get(key) if key in target else None
        if isinstance(value, dict) and isinstance(before, dict) and hasattr(current, "items"):
            _apply(current, before, value)
        else:
            target[key] = value


_MISSING = object()


def _drop_comment_above(mapping: Any, key: Any) -> None:
    """Remove the comment lines written just above ``key``, which go with it when it is deleted.

    ruamel.yaml keeps them as the trailing comment of whatever was last before the key (the
    previous sibling's deepest last value), after that line's own end-of-line comment.
    """
    keys = list(mapping.keys())
    index = keys.index(key)
    if index == 0:
        return
    holder, last = mapping, keys[index - 1]
    while hasattr(holder[last], "ca") and hasattr(holder[last], "keys") and len(holder[last]):
        holder, last = holder[last], list(holder[last].keys())[-1]
    entry = getattr(holder, "ca", None) and holder.ca.items.get(last)
    if not entry or len(entry) < 3 or entry[2] is None:
        return
    token = entry[2]
    own, newline, _above_next = token.value.partition("\n")
    token.value = own + newline if own.strip() else "\n"
