"""Build a candidate snapshot from the sources' newest versions (blocking; run in a thread)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.sources.base import LoadOptions, Source, SourceOutcome, SourceState
from agent.store.snapshot import Prepared, diff_flags, merge_sources


def prepare(
    sources: Sequence[Source],
    served: Sequence[SourceState],
    current_flags: Mapping[str, Any],
    base_revision: int,
    options: LoadOptions,
) -> tuple[Prepared, list[SourceOutcome]]:
    """Load every source (``served``: what each serves now, in the same order) and merge them."""
    outcomes = [source.load(state, options) for source, state in zip(sources, served, strict=True)]
    return build(outcomes, current_flags, base_revision), outcomes


def build(outcomes: Sequence[SourceOutcome], current_flags: Mapping[str, Any], base_revision: int) -> Prepared:
    states = tuple(o.state for o in outcomes)
    flags, sets, digest = merge_sources(states)
    return Prepared(
        sources=states,
        flags=flags,
        sets=sets,
        content_hash=digest,
        changes=diff_flags(current_flags, flags),
        base_revision=base_revision,
    )
