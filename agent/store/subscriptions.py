"""A subscriber's bounded queue of change events: the store never waits for a slow reader."""

from __future__ import annotations

from typing import Any

import trio

#: Events a subscriber may have waiting before it counts as not reading.
DEFAULT_SUBSCRIBER_QUEUE = 256


class Subscription:
    """One subscriber's bounded queue of events.

    The store never waits for a subscriber: when the queue is full the subscription is marked
    overflowed and closed, and the connection tells the client and hangs up.
    """

    def __init__(self, limit: int, *, flag_set: str | None = None) -> None:
        self._send, self.receive = trio.open_memory_channel[dict[str, Any]](limit)
        self.overflowed = False
        #: Only this flag set's changes (a ``flagSetId=ID`` selector), or every flag's.
        self.flag_set = flag_set

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.overflowed = True
            self._send.close()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def close(self) -> None:
        self._send.close()
