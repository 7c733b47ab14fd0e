"""An etcd prefix as a flag source: list it, follow it, serve the newest whole version.

The watch task owns the gateway. It lists the prefix, then follows it from the next revision,
keeping the newest ``Version`` in memory and telling the store (``changed``) when there is a
newer one; a burst of changes while the store is busy loading makes one load, not one each.
``load`` (in a worker thread) assembles the version into a flagd document and parses it like a
file; a version that does not parse is refused and the last good one kept, as for a file.

While etcd cannot be followed, ``load`` still returns the newest version it has, with the
reason as its error, so health says degraded and why while the flags keep being served; the
watch keeps trying (back-off with jitter) and catches up from where it stopped.

Writes (``commit``) are etcd transactions through the same gateway (``commit.py``); the wire
side of them is ``agent.writes.etcd``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs
import trio

from agent.sources.base import Changed, LoadOptions, SourceOutcome, SourceState, content_hash
from agent.sources.cache import Cached, LastGood
from agent.sources.etcd import cache
from agent.sources.etcd.commit import WriteConflict, commit
from agent.sources.etcd.errors import (
    AuthError,
    Compacted,
    EndpointDown,
    EtcdError,
    EtcdRequestError,
    EtcdUnavailable,
)
from agent.sources.etcd.follow import Backoff, Follower
from agent.sources.etcd.gateway import EtcdGateway
from agent.sources.etcd.layout import EtcdLocation
from agent.sources.etcd.settings import EtcdSettings
from agent.sources.etcd.txn import Op
from agent.sources.etcd.version import DocumentError, Version, assemble
from agent.sources.etcd.watch import WatchResponse
from agent.sources.files import parse_source

log = logging.getLogger("flagsock.etcd")

#: How long the first listing may hold up readiness (not serving: the socket answers before).
FIRST_LISTING_SECONDS = 2.0


class NotReady(EtcdError):
    """The source has not listed its prefix yet (etcd unreachable since start)."""


class EtcdSource:
    """Flags under one etcd prefix (see ``layout`` for the keys).

    Args:
        location: endpoints and prefix, from the ``etcd://`` URL.
        settings: how to reach the cluster (credentials, TLS, deadlines).
        state_dir: where the last good version is kept (``--state-dir``), or None.
    """

    def __init__(self, location: EtcdLocation, settings: EtcdSettings, *, state_dir: str | None = None) -> None:
        self.name = location.url
        self.location = location
        self.settings = settings
        self.version: Version | None = None
        #: When ``version`` was last known to be etcd's newest (listed, or a watch confirmed).
        self.fetched_at: float | None = None
        self._last_good = LastGood(state_dir, self.name)
        kept = self._last_good.read()
        version = cache.decode(kept.data) if kept is not None else None
        #: The version kept by an earlier run, served until etcd answers.
        self._kept: tuple[Version, float] | None = (version, kept.fetched_at) if version and kept else None
        self._saved_revision: int | None = version.revision if version is not None else None
        self._gateway: EtcdGateway | None = None
        self._follower: Follower | None = None
        self._trouble: tuple[str, float] | None = None
        self._advanced = trio.Event()  # set (and replaced) whenever version or trouble changes

    def __repr__(self) -> str:
        return f"EtcdSource({self.name!r})"

    # -- reading ------------------------------------------------------------------------------

    def load(self, previous: SourceState, options: LoadOptions) -> SourceOutcome:
        version, trouble, fetched_at = self.version, self.trouble, self.fetched_at
        if version is None:
            if self._kept is None:
                return SourceOutcome(previous, trouble)
            version, fetched_at = self._kept
            trouble = trouble or f"{self.name}: etcd not reached yet; serving the version kept from an earlier run"
        try:
            data = assemble(version, self.location)
        except DocumentError as exc:
            return SourceOutcome(previous, f"{self.name}: {exc}")
        digest = content_hash(data)
        if digest != previous.content_hash:
            outcome = parse_source(self.name, data, digest, previous, options)
            if outcome.error is not None:
                return outcome
            previous = outcome.state
        if version is self.version and fetched_at is not None:
            self._keep(version, fetched_at)
        return SourceOutcome(attrs.evolve(previous, revision=version.revision), trouble)

    def _keep(self, version: Version, fetched_at: float) -> None:
        """Keep a version that parsed (blocking, in ``load``'s worker thread); a failure is logged."""
        if version.revision == self._saved_revision:
            return
        try:
            self._last_good.write(Cached(cache.encode(version), fetched_at))
            self._saved_revision = version.revision
        except OSError as exc:
            log.warning("cannot keep the last good version of %s in the state directory: %s", self.name,
                        exc.strerror or exc)

    def status(self) -> dict[str, Any]:
        """Health beyond the content: stale while etcd cannot be followed (or before it first answers,
        serving the kept version), and when what is served was fetched."""
        if self.version is None and self._kept is not None:
            return {"kind": "etcd", "stale": True, "fetched_at": self._kept[1]}
        return {"kind": "etcd", "stale": self.version is None or self._trouble is not None,
                "fetched_at": self.fetched_at}

    @property
    def trouble(self) -> str | None:
        """Why etcd cannot be followed now, and since when; None while it is followed."""
        if self._trouble is None:
            return None
        message, since = self._trouble
        if self.version is not None:
            served = f"serving revision {self.version.revision} from memory"
        elif self._kept is not None:
            served = f"serving the version kept from an earlier run, revision {self._kept[0].revision}"
        else:
            served = "serving nothing yet"
        return f"{self.name}: {message} (since {_clock(since)} UTC; {served})"

    async def watch(self, changed: Changed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> Any:
        """List and follow the prefix until cancelled.

        The socket already answers (from the kept version, or empty): etcd never holds up
        serving. Readiness (``task_status.started``) waits a short while for the first listing
        to be served, so READY=1 usually means current; an unreachable etcd does not delay it
        longer than :data:`FIRST_LISTING_SECONDS`.
        """
        async with EtcdGateway(self.settings) as gateway, trio.open_nursery() as nursery:
            self._gateway = gateway
            dirty = _Flag()
            served = trio.Event()
            nursery.start_soon(self._tell_store, dirty, changed, served)
            nursery.start_soon(self._list_and_follow, gateway, dirty)
            with trio.move_on_after(FIRST_LISTING_SECONDS):
                await served.wait()
            task_status.started()

    async def _list_and_follow(self, gateway: EtcdGateway, dirty: "_Flag") -> None:
        """List the prefix, follow it from the next revision; list again whenever following stops."""
        backoff = Backoff()
        while True:
            try:
                listing = await gateway.range_prefix(self.location.prefix)
            except (EndpointDown, EtcdUnavailable, EtcdRequestError) as exc:
                self._set_trouble(exc, dirty)
                await backoff.wait()
                continue
            backoff.reset()
            self.fetched_at = time.time()
            self._set_version(Version.listed(listing.kvs), dirty)
            self._set_trouble(None, dirty)
            await self._follow(gateway, listing.revision + 1, dirty, backoff)

    async def _follow(self, gateway: EtcdGateway, start: int, dirty: "_Flag", backoff: Backoff) -> None:
        """Follow from ``start`` until the watch cannot go on; the caller lists again."""

        async def handle(response: WatchResponse) -> None:
            self.fetched_at = time.time()
            if response.events and self.version is not None:
                self._set_version(self.version.apply(response.events), dirty)

        async def on_state(error: EtcdError | None) -> None:
            if error is None:
                self.fetched_at = time.time()
            self._set_trouble(error, dirty)

        self._follower = Follower(gateway, self.location.prefix, self.location.range_end, start, on_state=on_state)
        try:
            await self._follower.run(handle)
        except Compacted as exc:
            log.warning("%s: %s", self.name, exc)
        except EtcdRequestError as exc:
            self._set_trouble(exc, dirty)
            await backoff.wait()
        finally:
            self._follower = None

    def _set_version(self, version: Version, dirty: "_Flag") -> None:
        self.version = version
        dirty.set()
        self._wake()

    def _set_trouble(self, error: EtcdError | None, dirty: "_Flag") -> None:
        if error is None:
            if self._trouble is not None:
                log.info("%s: following etcd again", self.name)
                self._trouble = None
                dirty.set()
            return
        if self._trouble is None or self._trouble[0] != str(error):
            since = self._trouble[1] if self._trouble is not None else time.time()
            self._trouble = (str(error), since)
            dirty.set()
        self._wake()

    def _wake(self) -> None:
        self._advanced.set()
        self._advanced = trio.Event()

    async def _tell_store(self, dirty: "_Flag", changed: Changed, served: trio.Event) -> None:
        """One load per burst: whatever changed while the store was loading makes the next load."""
        while True:
            await dirty.wait()
            why = f"etcd revision {self.version.revision}" if self.version is not None else "etcd state"
            await changed(why)
            if self.version is not None or self._trouble is not None:
                served.set()

    # -- writing ------------------------------------------------------------------------------

    async def wait_listed(self, timeout: float) -> bool:
        """Wait until the prefix has been listed once (a write that comes in the moment the agent
        starts); False when etcd is found unreachable first, or after ``timeout``."""
        with trio.move_on_after(timeout):
            while self.version is None and self._trouble is None:
                await self._advanced.wait()
        return self.version is not None

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """Wait until the version held is at ``revision`` or later; False after ``timeout``.

        Half-way through, the watch is reopened from where it is (a stream that hung without
        closing would otherwise hold the write until its idle deadline).
        """
        with trio.move_on_after(timeout):
            with trio.move_on_after(timeout / 2):
                while self.version is None or self.version.revision < revision:
                    await self._advanced.wait()
                return True
            if self._follower is not None:
                self._follower.reconnect()
            while self.version is None or self.version.revision < revision:
                await self._advanced.wait()
            return True
        return False

    async def commit(self, op: Op, if_revision: int | None, by: dict[str, Any]) -> int:
        """Apply ``op`` in etcd, under ``if_revision``; the revision it made (see ``commit.commit``).

        Raises:
            NotReady: the watch has not opened the gateway yet.
            WriteConflict, OutcomeUnknown and the gateway's errors: as ``commit.commit``.
        """
        if self._gateway is None:
            raise NotReady(",".join(self.location.endpoints), "not connected yet")
        return await commit(self._gateway, self.location, op, if_revision, by,
                            resolve_timeout=self.settings.request_timeout * 3)


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


class _Flag:
    """A level-triggered event: ``set`` any number of times, ``wait`` returns once and clears it."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


__all__ = ["AuthError", "EtcdSource", "NotReady", "WriteConflict"]
