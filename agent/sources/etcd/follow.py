"""Following a key range for as long as it takes: one watch after another, each resumed from the
revision after the last one delivered, so a cut stream, a hung member, a member killed or a
leader lost costs a reconnect and never an event.

What it cannot repair it raises: ``Compacted`` (the revision to resume from is gone: the caller
lists again and follows from there) and ``EtcdRequestError``/``AuthError`` (etcd says no).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import trio

from agent.sources.etcd.errors import EndpointDown, EtcdError, EtcdUnavailable, WatchIdle
from agent.sources.etcd.gateway import EtcdGateway
from agent.sources.etcd.watch import WatchResponse

Handler = Callable[[WatchResponse], Awaitable[None]]
StateHook = Callable[[EtcdError | None], Awaitable[None]]


async def _ignore(error: EtcdError | None) -> None:
    pass


class Backoff:
    """Exponential back-off with full jitter, reset after a success."""

    def __init__(self, first: float = 0.05, most: float = 2.0) -> None:
        self.first = first
        self.most = most
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    async def wait(self) -> None:
        delay = random.uniform(self.first, self._next)
        self._next = min(self.most, self._next * 2)
        await trio.sleep(delay)


class Follower:
    """Watch ``[key, range_end)`` from ``start_revision`` on, forever.

    Args:
        on_state: told the error when the watch is lost, and None when a new one is confirmed.
    """

    def __init__(self, gateway: EtcdGateway, key: bytes, range_end: bytes | None, start_revision: int, *,
                 on_state: StateHook | None = None, backoff: Backoff | None = None) -> None:
        self.gateway = gateway
        self.key = key
        self.range_end = range_end
        self.next_revision = start_revision
        self.reconnects = 0
        self._on_state = on_state or _ignore
        self._backoff = backoff or Backoff()
        self._current = trio.CancelScope()

    def reconnect(self) -> None:
        """Drop the current stream and open a new one from ``next_revision`` (a caller that knows a
        revision exists and has not seen it uses this as its probe)."""
        self._current.cancel()

    async def run(self, handle: Handler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Call ``handle`` with every WatchResponse, in order, until cancelled.

        ``task_status.started()`` once the first watch is confirmed.

        Raises:
            Compacted: ``next_revision`` is compacted; list again.
            EtcdRequestError: etcd refused the watch (permissions, a bad key).
        """
        started = False
        while True:
            self._current = trio.CancelScope()
            with self._current:
                try:
                    async with self.gateway.watch(self.key, self.range_end, self.next_revision) as stream:
                        self._backoff.reset()
                        await self._on_state(None)
                        if not started:
                            task_status.started()
                            started = True
                        async for response in stream:
                            await handle(response)
                            self.next_revision = stream.next_revision
                except WatchIdle:
                    pass  # quiet, or hung: the reopen is the probe (its "created" has a deadline)
                except (EndpointDown, EtcdUnavailable) as exc:
                    await self._on_state(exc)
                    await self._backoff.wait()
            self.reconnects += 1
