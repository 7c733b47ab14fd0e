"""Serialized reloads: one at a time, parsing off the event loop, swapping on it.

The watcher, SIGHUP, the ``reload`` op and writes all come through here, so two reloads never
race to swap the snapshot, and a write never interleaves with a reload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .loader import SETTLE_SECONDS, LoadOptions, SourceOutcome, prepare
from .snapshot import Prepared
from .store import Store

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
            # The cyclic collector is off from the parse to the swap: compiling allocates hundreds
            # of thousands of objects, and a full collection walks all of them and the served
            # snapshot while holding the GIL, which stalls every request for as long. After the
            # swap what is served is frozen (gc.freeze), so later full collections skip it.
            # The price: cyclic garbage that happens to be alive at a freeze is never reclaimed.
            # Flags change a few times a day, and the soak (199 reloads in 10 minutes) kept RSS
            # within 4%, so the stall it removes is worth far more.
            collecting = gc.isenabled()
            gc.disable()
            try:
                prepared, outcomes = await trio.to_thread.run_sync(
                    lambda: prepare(snap.sources, snap.flags, snap.revision, self.options, settle=self.settle)
                )
                result = self._apply(prepared, outcomes, why)
                if result.changed:
                    gc.freeze()
            finally:
                if collecting:
                    gc.enable()
            # Freeing the replaced snapshot's objects takes tens of milliseconds for a large
            # file; do it in a worker thread, in slices, so the event loop gets the GIL between.
            old, snap = [snap], None
            del prepared
            parsed = result.changed or bool(result.errors)
            await trio.to_thread.run_sync(_release, old, parsed)
            return result

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


def _release(box: list, trim: bool) -> None:
    """Drop the last reference to an old snapshot, a slice of its flags at a time.

    After a parse, also hand the heap that parsing used and freed back to the system: the
    decoded document of a large file is a transient peak that glibc would otherwise keep.
    """
    snap = box.pop()
    keep = list(snap.flags.values())
    for source in snap.sources:
        keep.extend(source.flags.values())
    del snap
    while keep:
        del keep[-256:]
    if trim and _malloc_trim is not None:
        _malloc_trim(0)  # a ctypes call: the GIL is released while it runs


def _find_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None


_malloc_trim = _find_malloc_trim()
