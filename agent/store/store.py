"""The one current-snapshot reference, the health it implies, and the change-event fan-out.

Requests read ``store.snapshot`` without a lock: swapping it is one assignment on the event
loop. Everything that changes what is served (file reloads, writes) goes through
:meth:`Store.install`, which is also where subscribers hear of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import attrs

from agent.sources.base import SourceState
from agent.store.history import History
from agent.store.snapshot import EMPTY_SETS, Prepared, Snapshot, diff_flags, merge_sources, next_revision
from agent.store.subscriptions import DEFAULT_SUBSCRIBER_QUEUE, Subscription

log = logging.getLogger("flagsock.store")

@attrs.frozen
class SourceError:
    """Why the newest version of a source was not loaded."""

    source: str
    message: str
    at: float

    def to_wire(self) -> dict[str, Any]:
        return {"message": self.message, "source": self.source, "at": iso_time(self.at)}


class Store:
    """Holds what is served and what health says about it.

    Args:
        names: the flag sources' names (paths or URLs), in merge order.
    """

    def __init__(self, names: Sequence[str], *, subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE,
                 history: History | None = None) -> None:
        now = time.time()
        sources = tuple(SourceState(path=n) for n in names)
        flags, sets, digest = merge_sources(sources)
        self.snapshot = Snapshot(revision=0, flags=flags, sources=sources, loaded_at=now, content_hash=digest,
                                 sets=sets)
        self.errors: dict[str, SourceError] = {}
        #: Per source, when it last loaded successfully (its age in /metrics).
        self.loaded_at: dict[str, float] = {}
        self.last_error: SourceError | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.started_at = now
        self._subscriber_queue = subscriber_queue
        self._subscribers: set[Subscription] = set()
        #: Every swap that changed a flag is recorded here (in memory only unless given a file).
        self.history = history if history is not None else History()

    # -- health -----------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return bool(self.errors) or any(not s.loaded for s in self.snapshot.sources)

    def record_failure(self, source: str, message: str) -> None:
        """A source failed to load: keep serving, say why in health, tell subscribers."""
        err = SourceError(source=source, message=message, at=time.time())
        repeated = (prev := self.errors.get(source)) is not None and prev.message == message
        self.errors[source] = err
        self.last_error = err
        if not repeated:
                log.warning("flag source %s was not loaded; still serving revision %d: %s",
                        source, self.snapshot.revision, message)
        self._broadcast({"event": "reload_failed", "revision": self.snapshot.revision,
                         "source": source, "message": message})

    def record_success(self, source: str) -> None:
        self.loaded_at[source] = time.time()
        if self.errors.pop(source, None) is not None:
            log.info("flag source %s loads again", source)
        if not self.errors:
            self.last_error = None

    # -- swapping ---------------------------------------------------------------------------

    def install(self, prepared: Prepared, by: dict[str, Any] | None = None) -> dict[str, str]:
        """Swap in a prepared snapshot if its content differs; return the flag changes.

        ``by``: who made the change, for the history (a write's peer); None for a change of the
        sources, named by the source of the changed flags.
        Must run on the event loop (it is the single writer of ``self.snapshot``).
        """
        current = self.snapshot
        if prepared.content_hash == current.content_hash:
            return {}
        changes = prepared.changes
        if prepared.base_revision != current.revision:
            # Another swap landed while this one was prepared: recompute against what is served.
            changes = diff_flags(current.flags, prepared.flags)
        self.snapshot = Snapshot(
            revision=next_revision(current.revision, prepared.sources),
            flags=prepared.flags,
            sources=prepared.sources,
            loaded_at=time.time(),
            content_hash=prepared.content_hash,
            sets=prepared.sets,
        )
        if changes:
            self._broadcast_changes(current, changes)
            self.history.record(self.snapshot.revision, iso_time(self.snapshot.loaded_at),
                                by if by is not None else _by_sources(changes, current.flags, prepared.flags),
                                changes, current.flags, prepared.flags, first=current.revision == 0)
        log.info("serving revision %d: %d flags (%s)", self.snapshot.revision,
                 len(prepared.flags), _summarize(changes))
        return changes

    # -- subscribers ------------------------------------------------------------------------

    def subscribe(self, flag_set: str | None = None) -> Subscription:
        """A new subscriber's queue; with ``flag_set``, it hears only of that set's flags."""
        sub = Subscription(self._subscriber_queue, flag_set=flag_set)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        sub.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close_subscribers(self) -> None:
        for sub in list(self._subscribers):
            self.unsubscribe(sub)

    def _broadcast(self, event: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            sub.offer(event)
            if sub.overflowed:
                self._subscribers.discard(sub)

    def _broadcast_changes(self, before: Snapshot, changes: dict[str, str]) -> None:
        """``changed`` to every subscriber; one restricted to a flag set hears that set's own diff
        (a key may change in the merged view and not in its set, or the other way round)."""
        revision = self.snapshot.revision
        everything = {"event": "changed", "revision": revision, "flags": changes}
        per_set: dict[str, dict[str, Any] | None] = {}
        for sub in list(self._subscribers):
            flag_set = sub.flag_set
            if flag_set is None:
                event = everything
            else:
                if flag_set not in per_set:
                    set_changes = diff_flags(before.sets.get(flag_set, EMPTY_SETS),
                                             self.snapshot.sets.get(flag_set, EMPTY_SETS))
                    per_set[flag_set] = ({"event": "changed", "revision": revision, "flags": set_changes}
                                         if set_changes else None)
                event = per_set[flag_set]
                if event is None:
                    continue
            sub.offer(event)
            if sub.overflowed:
                self._subscribers.discard(sub)


def _by_sources(changes: dict[str, str], old: Any, new: Any) -> dict[str, Any]:
    """Who made a change of the sources: the source (path or URL) of the flags it changed."""
    sources: list[str] = []
    for key in changes:
        source = getattr(new.get(key) or old.get(key), "source", None)
        if source is not None and source not in sources:
            sources.append(source)
    if len(sources) <= 1:
        return {"source": sources[0] if sources else None}
    return {"source": sources[0], "sources": sources}


def _summarize(changes: dict[str, str], limit: int = 5) -> str:
    if not changes:
        return "no flag changed"
    items = [f"{k} {v}" for k, v in list(changes.items())[:limit]]
    more = len(changes) - limit
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
