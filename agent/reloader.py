"""Serialized reloads: one at a time, parsing off the event loop, swapping on it.

The watcher, SIGHUP, the ``reload`` op and writes all come through here, so two reloads never
race to swap the snapshot, and a write never interleaves with a reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import trio

from .loader import SETTLE_SECONDS, LoadOptions, SourceOutcome, prepare
from .store import Prepared, Store

log = logging.getLogger("flagsock.reload")


@attrs.frozen
class ReloadResult:
    revision: int
    changed: bool
    errors: tuple[str, ...]


class Reloader:
    def __init__(self, store: Store, options: LoadOptions, *, settle: float = SETTLE_SECONDS) -> None:
        self.store = store
        self.options = options
        self.settle = settle
        #: Held for the whole of a reload or a write.
        self.lock = trio.StrictFIFOLock()
        #: Called on the event loop after each reload attempt (the systemd status line uses it).
        self.on_reload: list[Callable[[ReloadResult], None]] = []

    async def reload(self, why: str = "requested") -> ReloadResult:
        async with self.lock:
            snap = self.store.snapshot
            prepared, outcomes = await trio.to_thread.run_sync(
                lambda: prepare(snap.sources, snap.flags, snap.revision, self.options, settle=self.settle)
            )
            return self._apply(prepared, outcomes, why)

    def _apply(self, prepared: Prepared, outcomes: list[SourceOutcome], why: str) -> ReloadResult:
        store = self.store
        errors = []
        for o in outcomes:
            if o.error is None:
                store.record_success(o.state.path)
            else:
                errors.append(o.error)
                store.record_failure(o.state.path, o.error)
        if errors:
            store.reloads_failed += 1
        else:
            store.reloads_ok += 1
        changes = store.install(prepared)
        if changes:
            log.debug("reload (%s) changed %d flags", why, len(changes))
        result = ReloadResult(store.snapshot.revision, bool(changes), tuple(errors))
        for callback in self.on_reload:
            callback(result)
        return result

    async def install(self, prepared: Prepared) -> dict[str, str]:
        """Swap in a snapshot built elsewhere (a write); the caller holds :attr:`lock`."""
        return self.store.install(prepared)
