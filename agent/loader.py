"""Read flag sources from disk and turn them into a candidate snapshot.

Everything here blocks (file reads, JSON parsing, rule compilation) and runs in a worker
thread. A file caught half-written is read again until two reads agree, so an in-place
rewrite is never served half done.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

import attrs

from .flagfile import FlagFileError, parse_flag_document
from .model import ParsedSource
from .snapshot import Prepared, SourceState, diff_flags, merge_sources

#: Pause between the two reads that must agree before a file's content is trusted.
SETTLE_SECONDS = 0.015
#: Reads of a file that keeps changing before the newest one is parsed anyway.
MAX_READS = 20


@attrs.frozen
class LoadOptions:
    fractional: str = "v2"
    invalid_flags: str = "reject"


@attrs.frozen
class SourceOutcome:
    """One source after a load attempt: its state to serve, and why it failed (None if it did not)."""

    state: SourceState
    error: str | None


def read_stable(path: str, *, settle: float = SETTLE_SECONDS, first: bytes | None = None) -> bytes:
    """Read a whole file, again and again until two reads a moment apart agree.

    Args:
        first: a read already made, to compare the next one with.

    Raises:
        OSError: the file cannot be opened or read.
    """
    previous = _read(path) if first is None else first
    for _ in range(MAX_READS):
        time.sleep(settle)
        current = _read(path)
        if current == previous:
            return current
        previous = current
    return previous


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_source(previous: SourceState, options: LoadOptions, *, settle: float = SETTLE_SECONDS) -> SourceOutcome:
    """Load the newest version of one source, keeping ``previous`` when it cannot be loaded."""
    path = previous.path
    try:
        first = _read(path)
        if content_hash(first) == previous.content_hash:
            # What is served already: nothing to settle (the agent's own write lands here). If a
            # writer is mid-way, its next write brings another change event.
            return SourceOutcome(previous, None)
        data = read_stable(path, settle=settle, first=first)
    except FileNotFoundError:
        return SourceOutcome(previous, f"{path}: file not found")
    except IsADirectoryError:
        return SourceOutcome(previous, f"{path}: is a directory, not a flag file")
    except PermissionError:
        return SourceOutcome(previous, f"{path}: permission denied (the agent runs as uid {os.geteuid()})")
    except OSError as exc:
        return SourceOutcome(previous, f"{path}: cannot read: {exc.strerror or exc}")
    digest = content_hash(data)
    if digest == previous.content_hash:
        return SourceOutcome(previous, None)
    return parse_source(path, data, digest, previous, options)


def parse_source(path: str, data: bytes, digest: str, previous: SourceState, options: LoadOptions) -> SourceOutcome:
    try:
        parsed = parse_flag_document(
            data, path, fractional=options.fractional, invalid_flags=options.invalid_flags, reuse=previous
        )
    except FlagFileError as exc:
        return SourceOutcome(previous, str(exc))
    return SourceOutcome(source_state(path, digest, parsed), None)


def source_state(path: str, digest: str, parsed: ParsedSource) -> SourceState:
    """What a snapshot keeps of a parsed source (not the decoded document: nothing reads it)."""
    return SourceState(path=path, content_hash=digest, format=parsed.format, flags=parsed.flags,
                       problems=tuple(parsed.problems), signatures=parsed.signatures, context=parsed.context)


def prepare(
    sources: Sequence[SourceState],
    current_flags,
    base_revision: int,
    options: LoadOptions,
    *,
    settle: float = SETTLE_SECONDS,
) -> tuple[Prepared, list[SourceOutcome]]:
    """Load every source and build the candidate snapshot (blocking; run in a thread)."""
    outcomes = [load_source(s, options, settle=settle) for s in sources]
    return build(outcomes, current_flags, base_revision), outcomes


def build(outcomes: Sequence[SourceOutcome], current_flags, base_revision: int) -> Prepared:
    states = tuple(o.state for o in outcomes)
    flags, digest = merge_sources(states)
    return Prepared(
        sources=states,
        flags=flags,
        content_hash=digest,
        changes=diff_flags(current_flags, flags),
        base_revision=base_revision,
    )
