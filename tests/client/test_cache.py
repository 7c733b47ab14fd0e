"""The cached client: fast hits, never staler than the push latency, dropped when in doubt.

All of these need the agent's ``subscribe`` op and its ``changed`` events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from protocol.client import FlagClient

from .conftest import Agent, boolean_flag, edited, wait_for

# The goal is 100 ms from the file change to the client; allow a loaded CI machine more.
PUSH_LATENCY_BOUND_S = 0.5


def _subscribed_client(a: Agent) -> Iterator[FlagClient]:
    with FlagClient(a.socket_path, timeout=2.0, cache=True, max_backoff=0.2) as c:
        wait_for(lambda: c.subscribed, what="the subscription")
        yield c


@pytest.fixture
def cached(served: Agent) -> Iterator[FlagClient]:
    """A cached client of the shared agent (whose flags never change)."""
    yield from _subscribed_client(served)


@pytest.fixture
def cached_own(agent: Agent) -> Iterator[FlagClient]:
    """A cached_own client of this test's own agent."""
    yield from _subscribed_client(agent)


def test_second_call_is_a_cache_hit(cached: FlagClient) -> None:
    first = cached.evaluate("banner", {"targetingKey": "u1"}, type="string")
    assert first.value == "Hello"
    assert cached.evaluate("banner", {"targetingKey": "u1"}, type="string") is first
    # The key covers flag, type and context.
    assert cached.evaluate("banner", {"targetingKey": "u2"}, type="string") is not first
    assert cached.evaluate("banner", {"targetingKey": "u1"}) is not first


def test_cached_default_is_the_callers_default(cached: FlagClient) -> None:
    assert cached.evaluate("missing", default="a").value == "a"
    assert cached.evaluate("missing", default="b").value == "b"
    assert cached.evaluate("retired", default=1).value == 1
    assert cached.evaluate("retired", default=2).value == 2


def test_cached_check_does_not_ask_the_agent(cached: FlagClient, served: Agent) -> None:
    """A hit is answered from memory: the agent's evaluate counter does not move.

    (What a hit costs in microseconds is measured by bench/bench_client.py, not asserted here.)
    """
    assert cached.is_enabled("vip", user_id="user_123") is True
    with FlagClient(served.socket_path, timeout=2.0) as plain:
        before = plain.request("stats")["requests"].get("evaluate", 0)
        for _ in range(500):
            assert cached.is_enabled("vip", user_id="user_123") is True
        after = plain.request("stats")["requests"].get("evaluate", 0)
    assert after == before


def test_cache_flips_within_the_push_latency_after_a_file_edit(agent: Agent, cached_own: FlagClient) -> None:
    assert cached_own.is_enabled("dark_mode") is True
    assert cached_own.is_enabled("dark_mode") is True  # now cached
    with FlagClient(agent.socket_path, timeout=2.0) as uncached:
        agent.write_flags(edited(dark_mode=boolean_flag(False)))
        wait_for(lambda: uncached.is_enabled("dark_mode", default=True) is False, what="the agent to serve the edit")
        served_at = time.monotonic()
        wait_for(lambda: cached_own.is_enabled("dark_mode", default=True) is False, what="the cached client to flip")
        assert time.monotonic() - served_at < PUSH_LATENCY_BOUND_S


def test_removed_flag_stops_being_served_from_the_cache(agent: Agent, cached_own: FlagClient) -> None:
    assert cached_own.evaluate("banner", default="gone").value == "Hello"
    doc = edited()
    del doc["flags"]["banner"]
    agent.write_flags(doc)
    d = wait_for(
        lambda: (r := cached_own.evaluate("banner", default="gone")).error_code == "FLAG_NOT_FOUND" and r,
        what="the removal to reach the cache",
    )
    assert d.value == "gone"


def test_cache_is_dropped_when_the_subscription_is_lost(agent: Agent) -> None:
    lost = threading.Event()

    def on_event(event: dict) -> None:
        if event["event"] == "disconnected":
            lost.set()

    with FlagClient(agent.socket_path, timeout=2.0, cache=True, on_event=on_event) as c:
        wait_for(lambda: c.subscribed, what="the subscription")
        assert c.is_enabled("dark_mode") is True
        assert c.evaluate("dark_mode", type="boolean") is c.evaluate("dark_mode", type="boolean")
        agent.stop()
        assert lost.wait(5)
        assert not c.subscribed
        d = c.evaluate("dark_mode", default="fallback", type="boolean")
        assert (d.value, d.reason) == ("fallback", "ERROR")


def test_cache_resumes_after_the_agent_restarts(agent: Agent, cached_own: FlagClient) -> None:
    assert cached_own.is_enabled("dark_mode") is True
    agent.stop()
    wait_for(lambda: not cached_own.subscribed, what="the loss to be noticed")
    agent.write_flags(edited(dark_mode=boolean_flag(False)))
    agent.start()
    wait_for(lambda: cached_own.subscribed, what="the client to resubscribe")
    assert cached_own.is_enabled("dark_mode", default=True) is False
    assert cached_own.evaluate("dark_mode") is cached_own.evaluate("dark_mode")


def test_value_fetched_before_an_event_is_not_cached(cached: FlagClient, monkeypatch: pytest.MonkeyPatch) -> None:
    real_call = cached._call

    def call_overtaken_by_an_event(request: dict, honour_backoff: bool = True) -> dict:
        answer = real_call(request, honour_backoff)
        cached._cache.forget(live=None)  # an event is handled while the answer is on its way
        return answer

    monkeypatch.setattr(cached, "_call", call_overtaken_by_an_event)
    first = cached.evaluate("banner")
    monkeypatch.undo()
    second = cached.evaluate("banner")
    assert second is not first  # the first answer was not stored
    assert cached.evaluate("banner") is second  # but an undisturbed one is


def test_reload_failure_keeps_serving_and_the_client_survives_it(agent: Agent, cached_own: FlagClient) -> None:
    assert cached_own.is_enabled("dark_mode") is True
    agent.flags_path.write_text("{ not json")
    assert cached_own.is_enabled("dark_mode") is True
    agent.write_flags(edited(dark_mode=boolean_flag(False)))
    wait_for(lambda: cached_own.is_enabled("dark_mode", default=True) is False, what="the recovery to reach the cache")


def test_context_keys_tell_json_types_apart() -> None:
    from protocol.client import _context_key

    assert _context_key({"a": "1", "b": "2"}) == _context_key({"b": "2", "a": "1"})
    keys = {_context_key({"x": v}) for v in (True, 1, 1.0, "1", None, [1], {"y": 1})}
    assert len(keys) == 7
