"""FlagClient.watch(): the agent's events plus subscribed/disconnected, on its own connection."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from protocol.client import FlagClient

from .conftest import Agent, boolean_flag, edited

WAIT_S = 5.0


class Watcher:
    """Runs ``client.watch()`` in a thread and queues what it yields."""

    def __init__(self, client: FlagClient, reconnect: bool = True) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self.finished = threading.Event()
        self._gen = client.watch(reconnect=reconnect)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for event in self._gen:
            self.events.put(event)
        self.finished.set()

    def next(self, kind: str | None = None) -> dict:
        """The next event (of ``kind``, skipping others), waiting at most WAIT_S."""
        while True:
            event = self.events.get(timeout=WAIT_S)
            if kind is None or event["event"] == kind:
                return event

    def join(self) -> None:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()


def watching(client: FlagClient, **kw: bool) -> Iterator[Watcher]:
    w = Watcher(client, **kw)
    yield w
    client.close()
    w.join()


def test_watch_yields_a_changed_event_after_an_edit(agent: Agent) -> None:
    client = FlagClient(agent.socket_path, timeout=2.0)
    for w in watching(client):
        subscribed = w.next()
        assert subscribed["event"] == "subscribed"
        assert isinstance(subscribed["revision"], int)
        agent.write_flags(edited(dark_mode=boolean_flag(False), brand_new=boolean_flag(True)))
        changed = w.next("changed")
        assert changed["flags"] == {"dark_mode": "updated", "brand_new": "added"}
        assert changed["revision"] > subscribed["revision"]


def test_watch_reports_loss_and_reconnection(agent: Agent) -> None:
    client = FlagClient(agent.socket_path, timeout=2.0, max_backoff=0.1)
    for w in watching(client):
        assert w.next()["event"] == "subscribed"
        agent.stop()
        lost = w.next()
        assert lost["event"] == "disconnected"
        assert lost["message"]
        agent.start()
        assert w.next("subscribed")["event"] == "subscribed"


def test_watch_without_reconnect_ends_after_the_first_loss(socket_path: str) -> None:
    client = FlagClient(socket_path, timeout=0.5)
    w = Watcher(client, reconnect=False)
    event = w.next()
    assert event["event"] == "disconnected"
    assert "cannot connect" in event["message"]
    assert w.finished.wait(WAIT_S)
    client.close()


def test_close_ends_a_watch_blocked_in_another_thread(served: Agent) -> None:
    before = set(threading.enumerate())
    client = FlagClient(served.socket_path, timeout=2.0)
    w = Watcher(client)
    assert w.next()["event"] == "subscribed"
    client.close()
    assert w.finished.wait(WAIT_S)
    w.join()
    assert set(threading.enumerate()) - before == set()
