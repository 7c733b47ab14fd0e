"""The immutable view of every flag the agent serves.

A :class:`Snapshot` is built off the event loop from the parsed sources and swapped in with
one assignment, so a request reads one reference and never sees half a reload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from agent.sources.base import SourceState


@attrs.frozen
class Snapshot:
    """Compiled flags of all sources merged (later sources win on a key), and where they came from."""

    revision: int
    flags: Mapping[str, Any]
    sources: tuple[SourceState, ...]
    loaded_at: float
    content_hash: str

    @property
    def problems(self) -> tuple[Any, ...]:
        """Problems of flags that loaded isolated (``--invalid-flags isolate``)."""
        return tuple(p for s in self.sources for p in s.problems)

    def source(self, path: str) -> SourceState | None:
        for s in self.sources:
            if s.path == path:
                return s
        return None


def merge_sources(sources: Sequence[SourceState]) -> tuple[Mapping[str, Any], str]:
    """Merge the flags of every loaded source, later winning; return them and a combined hash."""
    merged: dict[str, Any] = {}
    digest = hashlib.sha256()
    for s in sources:
        merged.update(s.flags)
        digest.update(s.path.encode())
        digest.update(b"\0")
        digest.update((s.content_hash or "-").encode())
        digest.update(b"\0")
    return MappingProxyType(merged), digest.hexdigest()


def diff_flags(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, str]:
    """Which keys were ``added``, ``updated`` or ``removed`` between two flag mappings."""
    changes: dict[str, str] = {}
    for key, flag in new.items():
        before = old.get(key)
        if before is None:
            changes[key] = "added"
        elif before.fingerprint != flag.fingerprint:
            changes[key] = "updated"
    for key in old:
        if key not in new:
            changes[key] = "removed"
    return changes


@attrs.frozen
class Prepared:
    """A candidate snapshot, computed off the event loop, ready to be swapped in."""

    sources: tuple[SourceState, ...]
    flags: Any
    content_hash: str
    changes: dict[str, str]
    base_revision: int
