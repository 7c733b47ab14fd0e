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

EMPTY_SETS: Mapping[str, Any] = MappingProxyType({})

@attrs.frozen
class Snapshot:
    """Compiled flags of all sources merged (later sources win on a key), and where they came from.

    ``sets`` are flagd's flag sets: per ``metadata.flagSetId`` (a flag's own, else its file's),
    that set's flags merged the same way, so a key may live in two sets with two definitions.
    """

    revision: int
    flags: Mapping[str, Any]
    sources: tuple[SourceState, ...]
    loaded_at: float
    content_hash: str
    sets: Mapping[str, Mapping[str, Any]] = EMPTY_SETS

    def select(self, selector: str | None) -> Mapping[str, Any]:
        """The flags a request with ``selector`` sees: all of them, or one flag set's.

        Raises:
            SelectorError: the selector is not ``flagSetId=ID``.
        """
        if selector is None:
            return self.flags
        return self.sets.get(flag_set_of(selector), EMPTY_SETS)

    @property
    def problems(self) -> tuple[Any, ...]:
        """Problems of flags that loaded isolated (``--invalid-flags isolate``)."""
        return tuple(p for s in self.sources for p in s.problems)

    def source(self, path: str) -> SourceState | None:
        for s in self.sources:
            if s.path == path:
                return s
        return None


def merge_sources(sources: Sequence[SourceState]) -> tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]], str]:
    """Merge the flags of every loaded source, later winning; return them, their flag sets and a
    combined hash."""
    merged: dict[str, Any] = {}
    sets: dict[str, dict[str, Any]] = {}
    digest = hashlib.sha256()
    for s in sources:
        merged.update(s.flags)
        for key, flag in s.flags.items():
            flag_set = flag.metadata.get("flagSetId")
            if type(flag_set) is str:
                sets.setdefault(flag_set, {})[key] = flag
        digest.update(s.path.encode())
        digest.update(b"\0")
        digest.update((s.content_hash or "-").encode())
        digest.update(b"\0")
        if s.revision is not None:  # a new revision of the same content is still a new version
            digest.update(str(s.revision).encode())
            digest.update(b"\0")
    frozen_sets = MappingProxyType({k: MappingProxyType(v) for k, v in sets.items()}) if sets else EMPTY_SETS
    return MappingProxyType(merged), frozen_sets, digest.hexdigest()


class SelectorError(ValueError):
    """A selector this agent does not understand; the message says which forms it takes."""


def flag_set_of(selector: str) -> str:
    """The flag set a selector names (flagd's ``flagSetId=ID``)."""
    name, sep, value = selector.partition("=")
    if sep and name.strip() == "flagSetId" and value.strip():
        return value.strip()
    raise SelectorError(f"selector {selector[:100]!r} is not understood; use \"flagSetId=ID\" to restrict a request "
                        "to one flag set, or leave it out to see every flag")


def next_revision(current: int, sources: Sequence[SourceState]) -> int:
    """The revision of a new snapshot: a source's own (etcd's, the same on every host) when one
    has it and it is not behind what is served, else one more than what is served."""
    own = [s.revision for s in sources if s.revision is not None]
    if own and max(own) >= current:
        return max(own)
    return current + 1


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
    sets: Mapping[str, Mapping[str, Any]] = EMPTY_SETS
