"""Build a candidate snapshot from the sources' newest versions (blocking; run in a thread).

The boundary between a source and the store: whatever happens while one source loads (a
parser bug, ``RecursionError``, ``MemoryError``, anything) is an error of that source, which
keeps its last good version and says why in ``health``. Nothing a flag source holds may stop
the agent or the other sources.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from agent.sources.base import LoadOptions, Source, SourceOutcome, SourceState
from agent.store.snapshot import Prepared, diff_flags, merge_sources

log = logging.getLogger("flagsock.reload")


def load_source(source: Source, served: SourceState, options: LoadOptions) -> SourceOutcome:
    """``source.load``, with any exception turned into an error of that source."""
    try:
        return source.load(served, options)
    except MemoryError:
        return SourceOutcome(served, f"{source.name}: ran out of memory while loading it; still serving the "
                                     "last version that loaded (lower the max-file-bytes or max-flags settings, "
                                     "or give the agent more memory)")
    except RecursionError:
        return SourceOutcome(served, f"{source.name}: nested too deeply to load; still serving the last version "
                                     "that loaded")
    except Exception as exc:  # a bug in a source or the engine: one source's error, never a crash
        log.debug("loading %s failed", source.name, exc_info=True)
        return SourceOutcome(served, f"{source.name}: could not be loaded ({type(exc).__name__}: {exc}); still "
                                     "serving the last version that loaded")


def prepare(
    sources: Sequence[Source],
    served: Sequence[SourceState],
    current_flags: Mapping[str, Any],
    base_revision: int,
    options: LoadOptions,
) -> tuple[Prepared, list[SourceOutcome]]:
    """Load every source (``served``: what each serves now, in the same order) and merge them."""
    outcomes = [load_source(source, state, options) for source, state in zip(sources, served, strict=True)]
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
