"""Serialized reloads: one at a time, parsing off the event loop, swapping on it.

The watcher, SIGHUP, the ``reload`` op and writes all come through here, so two reloads never
race to swap the snapshot, and a write never interleaves with a reload.

Each source loads in a worker thread with a deadline (``LoadOptions.load_timeout``): a load that
has not finished by then is abandoned as an error of that source (its thread may finish later;
what it returns is dropped), so one source that hangs holds neither the reload lock, nor
writes, nor shutdown. Until an abandoned load finishes no other load of that source starts, so
a source that keeps hanging costs one thread, not one per reload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from agent.sources.base import LoadOptions, Source, SourceOutcome, SourceState
from agent.store.loading import build, load_source
from agent.store.snapshot import Prepared
from agent.store.store import Store

log = logging.getLogger("flagsock.reload")


@attrs.frozen
class ReloadResult:
    revision: int
    changed: bool
    errors: tuple[str, ...]


class Reloader:
    def __init__(self, store: Store, sources: Sequence[Source], options: LoadOptions) -> None:
        self.store = store
        self.sources = tuple(sources)
        self.options = options
        #: Held for the whole of a reload or a write.
        self.lock = trio.StrictFIFOLock()
        #: Called on the event loop after each reload attempt (the systemd status line uses it).
        self.on_reload: list[Callable[[ReloadResult], None]] = []
        #: Per source name, the load abandoned at its deadline that is still running.
        self._abandoned: dict[str, _Running] = {}

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
                served, current_flags, revision = snap.sources, snap.flags, snap.revision
                del snap  # from here on the old snapshot is only the store's, to be freed off the loop
                outcomes = [await self._load(source, state) for source, state in zip(self.sources, served, strict=True)]
                try:
                    prepared = await trio.to_thread.run_sync(build, outcomes, current_flags, revision)
                except Exception as exc:  # MemoryError merging them: keep serving what is served
                    outcomes = [o if o.state is state else SourceOutcome(state, f"{state.path}: could not be merged "
                                                                                f"with the other sources ({exc!r})")
                                for o, state in zip(outcomes, served, strict=True)]
                    return self._result(self._record(outcomes))
                del current_flags, served
                errors = self._record(outcomes)
                del outcomes
                return await self.install(prepared, errors, parsed=True)
            finally:
                if collecting:
                    gc.enable()

    async def _load(self, source: Source, served: SourceState) -> SourceOutcome:
        """One source's newest version, or its error; never longer than the load timeout."""
        timeout = self.options.load_timeout
        stuck = self._abandoned.get(source.name)
        if stuck is not None:
            if not stuck.done:
                # The same words every time: health and the log repeat an unchanged error quietly.
                return SourceOutcome(served, f"{source.name}: a load abandoned at its deadline has still not "
                                             "finished, so no new one was started; still serving the last version "
                                             "that loaded")
            del self._abandoned[source.name]
        running = _Running()

        def load() -> SourceOutcome:
            try:
                return load_source(source, served, self.options)
            finally:
                running.done = True

        with trio.move_on_after(timeout):
            return await trio.to_thread.run_sync(load, abandon_on_cancel=True)
        self._abandoned[source.name] = running
        log.warning("loading %s took longer than %g s; abandoned", source.name, timeout)
        return SourceOutcome(served, f"{source.name}: loading took longer than {timeout:g} s (the load-timeout "
                                     "setting) and was abandoned; still serving the last version that loaded")

    def _result(self, errors: tuple[str, ...]) -> ReloadResult:
        result = ReloadResult(self.store.snapshot.revision, False, errors)
        for callback in self.on_reload:
            callback(result)
        return result

    def _record(self, outcomes: list[SourceOutcome]) -> tuple[str, ...]:
        """Health bookkeeping of one reload: which sources loaded and which did not, and why."""
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
        return tuple(errors)

    async def install(self, prepared: Prepared, errors: tuple[str, ...] = (), *, parsed: bool,
                      by: dict[str, Any] | None = None) -> ReloadResult:
        """Swap ``prepared`` in (if it changed anything) and tell the ``on_reload`` callbacks.

        The one way a snapshot is swapped, for reloads and writes alike; the caller holds
        :attr:`lock`. ``parsed``: a file was parsed to build it, so the heap is worth trimming.
        ``by``: who made the change (a write's peer, see ``peer.who``), for the history.
        """
        old = [self.store.snapshot]
        changes = self.store.install(prepared, by)
        del prepared
        swapped = self.store.snapshot is not old[0]
        if swapped:
            gc.freeze()
        result = ReloadResult(self.store.snapshot.revision, bool(changes), errors)
        for callback in self.on_reload:
            callback(result)
        if swapped:
            # Freeing the replaced snapshot takes tens of milliseconds for a large file: do it
            # in a worker thread, in slices, so the event loop gets the GIL in between.
            await trio.to_thread.run_sync(_release, old, parsed or bool(errors))
        return result


class _Running:
    """A load in a worker thread: ``done`` is set by the thread when it returns or raises."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


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
