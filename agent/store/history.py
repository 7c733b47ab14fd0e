"""Every change of what is served: who made it, when, and each flag's definition before and after.

:meth:`History.record` is called by the store at every swap that changed a flag, on the event
loop: it only gathers references (the old and new flags' definition texts), so a swap never
waits for it. Encoding the JSON line and writing it (appended, fsynced) happen in a worker
thread, batched: every change recorded while a write is under way goes in the next one.

The history is bounded by ``max_bytes``, in memory and on disk alike, the oldest changes
dropped first (on disk by an atomic rewrite; see :mod:`agent.store.historyfile`). Without a
file (no ``--state-dir``) it is kept in memory only, and ``describe`` says so.

A restart is not a change, so loading the flags at start is not recorded, except where the
history knew a flag and it was edited while the agent was stopped: that is a change (made
``while_stopped``) and is recorded as one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson
import trio

from agent.store.historyfile import HistoryFile

log = logging.getLogger("flagsock.history")

DEFAULT_HISTORY_MAX_BYTES = 16 << 20
HISTORY_FILE_NAME = "history.jsonl"
#: When the file outgrows ``max_bytes``, it is rewritten down to this share of it, so that the
#: rewrite (of the whole file) happens once per quarter of the bound, not at every append.
_KEEP_SHARE = 0.75

#: (flag key, "added"/"updated"/"removed", definition JSON before or None, after or None)
FlagChange = tuple[str, str, "bytes | None", "bytes | None"]


class Entry:
    """One change. ``line`` is its JSON line, made on first need (in the writer's thread, or
    for a ``history`` answer, whichever comes first)."""

    __slots__ = ("keys", "_line", "_parts", "size", "counted")

    def __init__(self, keys: frozenset[str], *, line: bytes | None = None,
                 parts: tuple[int, str, dict, list[FlagChange]] | None = None) -> None:
        self.keys = keys
        self.counted = 0  # the size the history counted it with (an estimate until encoded)
        self._line = line
        self._parts = parts
        if line is not None:
            self.size = len(line)
        else:
            assert parts is not None
            self.size = 120 + sum(len(k) + 48 + len(b or b"") + len(a or b"") for k, _, b, a in parts[3])

    @property
    def line(self) -> bytes:
        line = self._line
        if line is None:
            revision, at, by, flags = self._parts  # type: ignore[misc]
            line = orjson.dumps({
                "revision": revision, "at": at, "by": by,
                "flags": {key: {"change": change, "before": _fragment(before), "after": _fragment(after)}
                          for key, change, before, after in flags},
            }, option=orjson.OPT_APPEND_NEWLINE)
            self._line, self._parts, self.size = line, None, len(line)
        return line

    def to_wire(self, flag: str | None) -> dict[str, Any]:
        entry = orjson.loads(self.line)
        if flag is not None:
            entry["flags"] = {flag: entry["flags"][flag]}
        return entry


def _fragment(text: bytes | None) -> Any:
    return None if text is None else orjson.Fragment(text)


class History:
    """Args:
        path: the JSON-lines file, or None to keep the history in memory only.
        max_bytes: the bound on the history's size (the JSON lines), in memory and on disk.
    """

    def __init__(self, path: str | None = None, *, max_bytes: int = DEFAULT_HISTORY_MAX_BYTES) -> None:
        self.file = HistoryFile(path) if path else None
        self.max_bytes = max_bytes
        self._entries: deque[Entry] = deque()
        self._bytes = 0
        self._pending: list[Entry] = []
        self._wake: trio.Event | None = None
        self._lock: trio.Lock | None = None
        #: Why the last write of the file failed; None once one succeeds.
        self.error: str | None = None
        #: Per flag the history knows, its last recorded definition (None: removed). Only kept
        #: from load() to the first swap, to see what changed while the agent was stopped.
        self._last_known: dict[str, bytes | None] | None = None
        #: Writes committed elsewhere (etcd) that will come back through a source: (flags, by).
        self._expected: list[tuple[frozenset[str], dict[str, Any]]] = []

    @property
    def path(self) -> str | None:
        return self.file.path if self.file else None

    # -- start ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the file (blocking: call it in a worker thread, before the first swap).

        Raises:
            OSError: the file can be neither read nor created.
        """
        if self.file is None:
            return
        last_known: dict[str, bytes | None] = {}
        bad = 0
        for line in self.file.load():
            try:
                entry = orjson.loads(line)
                flags = entry["flags"]
                for key, change in flags.items():
                    after = change["after"]
                    last_known[key] = None if after is None else orjson.dumps(after, option=orjson.OPT_SORT_KEYS)
            except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                bad += 1
                continue
            self._keep(Entry(frozenset(flags), line=line))
        if bad:
            log.warning("%s: skipped %d lines that are not history entries", self.file.path, bad)
        self._last_known = last_known

    # -- recording (on the event loop) ------------------------------------------------------------

    def expect(self, flags: frozenset[str], by: dict[str, Any]) -> tuple[frozenset[str], dict[str, Any]]:
        """A write about to be committed in a remote store, whose change then comes back through
        the source's watch like anyone's: the next swap changing one of ``flags`` is recorded as
        made ``by``. Returns the token :meth:`withdraw` takes if the write is not committed."""
        token = (flags, by)
        self._expected.append(token)
        del self._expected[:-64]  # a change that never came back must not pin its peer forever
        return token

    def withdraw(self, token: tuple[frozenset[str], dict[str, Any]]) -> None:
        if token in self._expected:
            self._expected.remove(token)

    def record(self, revision: int, at: str, by: dict[str, Any], changes: Mapping[str, str],
               old: Mapping[str, Any], new: Mapping[str, Any], *, first: bool = False) -> None:
        """Record one swap's ``changes`` (key -> added/updated/removed) between flag maps.

        ``first``: the flags' first load since start (see the module docstring).
        """
        if first:
            self._record_start(revision, at, by, new)
            return
        for token in self._expected:
            if not token[0].isdisjoint(changes):
                self._expected.remove(token)
                by = token[1]
                break
        self._last_known = None
        flags: list[FlagChange] = []
        for key, change in changes.items():
            before, after = old.get(key), new.get(key)
            flags.append((key, change, before.definition if before is not None else None,
                          after.definition if after is not None else None))
        self._add(Entry(frozenset(changes), parts=(revision, at, by, flags)))

    def _record_start(self, revision: int, at: str, by: dict[str, Any], new: Mapping[str, Any]) -> None:
        """The first load: what differs from what the history last recorded, flag by flag."""
        known, self._last_known = self._last_known or {}, None
        flags: list[FlagChange] = []
        for key, before in known.items():
            flag = new.get(key)
            after = flag.definition if flag is not None else None
            if before != after:
                change = "removed" if after is None else "added" if before is None else "updated"
                flags.append((key, change, before, after))
        if flags:
            sources = sorted({new[k].source for k, _, _, a in flags if a is not None})
            by = {**by, "source": sources[0], "while_stopped": True} if sources else {**by, "while_stopped": True}
            self._add(Entry(frozenset(k for k, *_ in flags), parts=(revision, at, by, flags)))

    def _add(self, entry: Entry) -> None:
        self._keep(entry)
        if self.file is not None:
            self._pending.append(entry)
            if self._wake is not None:
                self._wake.set()

    def _keep(self, entry: Entry) -> None:
        self._entries.append(entry)
        entry.counted = entry.size
        self._bytes += entry.counted
        self._trim()

    def _trim(self) -> None:
        while self._bytes > self.max_bytes and len(self._entries) > 1:  # the newest always stays
            dropped = self._entries.popleft()
            self._bytes -= dropped.counted
            dropped.counted = 0

    # -- reading --------------------------------------------------------------------------------

    def changes(self, flag: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` changes (of ``flag`` only, if given), newest first."""
        found = []
        for entry in reversed(self._entries):
            if flag is None or flag in entry.keys:
                found.append(entry.to_wire(flag))
                if len(found) >= limit:
                    break
        return found

    def describe(self) -> dict[str, Any]:
        """For ``health``: where the history is kept (if anywhere) and how big it is."""
        return {
            "durable": self.file is not None,
            "path": self.path,
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "error": self.error,
        }

    # -- writing (a task, and the worker thread it uses) -------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write recorded changes to the file as they come, until cancelled."""
        self._wake = trio.Event()
        task_status.started()
        while True:
            if not self._pending:
                await self._wake.wait()
                self._wake = trio.Event()
            await self.flush()
            if self.error is not None and self._pending:
                await trio.sleep(1.0)  # the disk refused: retry, but not in a busy loop

    async def flush(self) -> None:
        """Write every change recorded so far; return once it is on disk (or failed, see ``error``).

        Shielded: a batch once started is finished. One batch at a time, in order: a flush that
        finds another under way waits for it, and then writes what is left.
        """
        if self.file is None:
            return
        if self._lock is None:
            self._lock = trio.Lock()
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            kept = list(self._entries)
            with trio.CancelScope(shield=True):
                try:
                    await trio.to_thread.run_sync(self._write, batch, kept)
                except OSError as exc:
                    if self.error is None:
                        log.error("could not write the change history to %s: %s; keeping it in memory and "
                                  "retrying", self.path, exc.strerror or exc)
                    self.error = f"{exc.strerror or exc} (at {self.path})"
                    self._pending[:0] = batch
                    return
            for entry in batch:  # encoded now: count their exact size instead of the estimate
                if entry.counted:
                    self._bytes += entry.size - entry.counted
                    entry.counted = entry.size
            self._trim()
        if self.error is not None:
            log.info("the change history is written to %s again", self.path)
            self.error = None

    def _write(self, batch: list[Entry], kept: list[Entry]) -> None:
        """Blocking: append ``batch``; past the bound, rewrite the file with the newest of ``kept``."""
        assert self.file is not None
        self.file.append([entry.line for entry in batch])
        if self.file.size <= self.max_bytes:
            return
        lines: list[bytes] = []
        total = 0
        for entry in reversed(kept):
            line = entry.line
            if lines and total + len(line) > self.max_bytes * _KEEP_SHARE:
                break
            lines.append(line)
            total += len(line)
        lines.reverse()
        self.file.rewrite(lines)
