"""A flag file as a source: read it whole and stable, parse it, and watch its directory.

Reading blocks and runs in a worker thread. A file caught half-written is read again until two
reads agree, so an in-place rewrite is never served half done.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

from agent.engine.formats.document import FlagFileError, parse_flag_document
from agent.sources.base import (
    Changed,
    LoadOptions,
    SourceOutcome,
    SourceState,
    content_hash,
    source_state,
)
from agent.sources.trust import why_untrusted
from agent.sources.watcher import POLL_SECONDS, SourceWatcher, Watch

#: Pause between the two reads that must agree before a file's content is trusted.
SETTLE_SECONDS = 0.015
#: Reads of a file that keeps changing before the newest one is parsed anyway.
MAX_READS = 20


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


def parse_source(path: str, data: bytes, digest: str, previous: SourceState, options: LoadOptions) -> SourceOutcome:
    """A version's bytes, parsed; ``previous`` with the problems when they do not parse."""
    try:
        parsed = parse_flag_document(
            data, path, fractional=options.fractional, invalid_flags=options.invalid_flags, reuse=previous
        )
    except FlagFileError as exc:
        return SourceOutcome(previous, str(exc))
    return SourceOutcome(source_state(path, digest, parsed), None)


class FileSource:
    """One flag file on disk (JSON, flagd or simple format).

    Args:
        path: the file, as health names it.
        watch: the directory watcher (``watchfiles.awatch`` unless a test hands in another).
        poll_seconds: period of the safety stat poll.
        settle: pause between the reads that must agree.
    """

    def __init__(self, path: str, *, watch: Watch | None = None, poll_seconds: float = POLL_SECONDS,
                 settle: float = SETTLE_SECONDS) -> None:
        self.name = path
        self._watch = watch
        self._poll_seconds = poll_seconds
        self._settle = settle

    def __repr__(self) -> str:
        return f"FileSource({self.name!r})"

    def load(self, previous: SourceState, options: LoadOptions) -> SourceOutcome:
        path = self.name
        try:
            if untrusted := why_untrusted(path):  # before every read: see agent/sources/trust.py
                return SourceOutcome(previous, untrusted)
            first = _read(path)
            if content_hash(first) == previous.content_hash:
                # What is served already: nothing to settle (the agent's own write lands here). If a
                # writer is mid-way, its next write brings another change event.
                return SourceOutcome(previous, None)
            data = read_stable(path, settle=self._settle, first=first)
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

    def status(self) -> dict[str, Any]:
        return {"kind": "file"}

    async def watch(self, changed: Changed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> Any:
        watcher = SourceWatcher([self.name], lambda: changed("file change"), watch=self._watch,
                                poll_seconds=self._poll_seconds)
        await watcher.run(task_status=task_status)
