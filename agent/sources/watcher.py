"""Notice when a flag source changes on disk, however it was changed.

Two mechanisms feed one "dirty" signal:

* watchfiles on each source's parent directory (never the file itself: an atomic replace
  gives the path a new inode and a watch on the old one goes quiet). Symlinked sources, as in
  a Kubernetes ConfigMap mount (``flags.json -> ..data/flags.json``, ``..data`` swapped), are
  covered by also watching the directory the link resolves into and by listening for ``..``
  entries.
* a slow stat poll, which catches what inotify cannot: a parent directory removed and
  re-created (the watch is then restarted), a file the watch missed while it was starting.

Bursts of events collapse into one reload; the reload itself hashes the content, so events
that changed nothing (the agent's own write, a touch) cost one read and no new revision.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    import watchfiles

log = logging.getLogger("flagsock.watch")

#: watchfiles waits this long for quiet before reporting a batch of changes.
DEBOUNCE_MS = 40
#: ... checking for changes this often while it waits.
STEP_MS = 10
#: The stat poll's period: the worst-case delay for changes inotify cannot see.
POLL_SECONDS = 1.0

Watch = Callable[..., Any]


def _signature(path: str) -> tuple[Any, ...] | None:
    try:
        st = os.stat(path)
    except OSError as exc:
        return ("error", exc.errno)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _dir_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class SourceWatcher:
    """Calls ``on_change`` (coalesced, never concurrently) whenever a source may have changed.

    Args:
        paths: the flag source files.
        on_change: the reload to run.
        watch: the directory watcher, ``watchfiles.awatch`` unless a test hands in another.
        poll_seconds: period of the safety stat poll.
    """

    def __init__(
        self,
        paths: Sequence[str],
        on_change: Callable[[], Awaitable[Any]],
        *,
        watch: Watch | None = None,
        poll_seconds: float = POLL_SECONDS,
        debounce_ms: int = DEBOUNCE_MS,
        step_ms: int = STEP_MS,
    ) -> None:
        self.paths = [os.path.abspath(p) for p in paths]
        self.on_change = on_change
        self.watch = watch
        self.poll_seconds = poll_seconds
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self._dirty = trio.Event()
        self._restart = trio.Event()
        self._names: dict[str, set[str]] = {}

    def mark_dirty(self) -> None:
        self._dirty.set()

    def _watch_targets(self) -> dict[str, set[str]]:
        """Existing directories to watch, each with the entry names that matter in it."""
        targets: dict[str, set[str]] = {}
        for path in self.paths:
            for candidate in {path, os.path.realpath(path)}:
                directory, name = os.path.split(candidate)
                if os.path.isdir(directory):
                    targets.setdefault(directory, set()).add(name)
        return targets

    def _matters(self, change: watchfiles.Change, path: str) -> bool:
        directory, name = os.path.split(path)
        names = self._names.get(directory)
        if names is None:
            return False
        return name in names or name.startswith("..")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled; ``task_status.started()`` once the directory watch is set up
        (or, for a directory that does not exist yet, once the stat poll covers it)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reload_loop)
            nursery.start_soon(self._poll_loop)
            await nursery.start(self._watch_loop)
            task_status.started()

    async def _reload_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            await self._reload_now()

    async def _reload_now(self) -> None:
        try:
            await self.on_change()
        except Exception:  # a reload must never take the watcher down
            log.exception("reload after a file change failed unexpectedly")

    async def _watch_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.watch is None:
            # watchfiles (and the anyio it brings) takes tens of milliseconds to import: done in
            # a worker thread, once the socket answers, so neither start-up nor the first
            # requests wait for it.
            self.watch = await trio.to_thread.run_sync(_import_awatch)
        announce = task_status.started  # once: the first watch (or the poll alone) covers the files
        while True:
            self._restart = trio.Event()
            targets = self._watch_targets()
            self._names = targets
            if not targets:
                announce, _ = _nothing, announce()
                await self._restart.wait()
                continue
            stop = trio.Event()
            try:
                async with trio.open_nursery() as nursery:

                    async def stop_on_restart_or_cancel() -> None:
                        # The watch runs in a thread that only returns when `stop` is set (it
                        # checks every `step` ms), so cancellation alone would wait for its
                        # timeout: set it on the way out too.
                        try:
                            await self._restart.wait()
                        finally:
                            stop.set()

                    nursery.start_soon(stop_on_restart_or_cancel)
                    await nursery.start(self._consume, targets, stop)
                    if announce is not _nothing:
                        # What changed between the first load and now is served before the
                        # caller hears the watch is up (systemd's READY=1 comes after this).
                        await self._reload_now()
                    else:
                        self.mark_dirty()
                    announce, _ = _nothing, announce()
                    await self._restart.wait()
                    nursery.cancel_scope.cancel()
            except Exception as exc:  # e.g. a watched directory vanished under the watcher
                log.info("directory watch stopped (%s); the stat poll covers until it restarts", exc)
                announce, _ = _nothing, announce()
                await self._restart.wait()

    async def _consume(self, targets: dict[str, set[str]], stop: trio.Event, *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        changes = self.watch(
            *targets,
            watch_filter=self._matters,
            debounce=self.debounce_ms,
            step=self.step_ms,
            stop_event=stop,
            recursive=False,
            ignore_permission_denied=True,
        ).__aiter__()
        # watchfiles sets up its inotify watch inside the first __anext__, before that call first
        # blocks; so once the task below has run up to its first block (two scheduling batches:
        # trio runs every task of a batch before the next), the watch is up. The caller's reload
        # reads the files after that: a change made before is read then, a later one reported.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, changes)
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            task_status.started()

    async def _pump(self, changes: Any) -> None:
        async for _changes in changes:
            self.mark_dirty()
        self._restart.set()  # the watch ended by itself (its directory went away)

    async def _poll_loop(self) -> None:
        signatures = {p: _signature(p) for p in self.paths}
        dirs = {d: _dir_identity(d) for d in self._watch_targets()}
        while True:
            await trio.sleep(self.poll_seconds)
            now = {p: _signature(p) for p in self.paths}
            if now != signatures:
                signatures = now
                self.mark_dirty()
            targets = self._watch_targets()
            now_dirs = {d: _dir_identity(d) for d in targets}
            if now_dirs != dirs or set(targets) != set(self._names):
                dirs = now_dirs
                self._restart.set()


def _nothing() -> None:
    pass


def _import_awatch() -> Watch:
    import watchfiles

    return watchfiles.awatch
