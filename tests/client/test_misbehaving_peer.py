"""The client against a peer that breaks the protocol: it must return defaults, never raise.

These use a scripted socket server (the ``peer`` fixture, tests/client/hostile.py) instead of
the agent, because the agent does not misbehave on purpose. test_hostile_agent.py has the
attacks; these are the everyday faults.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from protocol.client import FlagClient

from .hostile import answers

# Generous, so that a busy test machine does not turn an answer into a timeout.
LOADED_MACHINE_TIMEOUT = 2.0

# Given one request (a dict), return the bytes to answer with; None to answer nothing.
Script = Callable[[dict], bytes | None]


def scripted(peer, script: Script):
    return peer(answers(script))


def ok(request: dict, result: dict) -> bytes:
    return json.dumps({"id": request.get("id"), "ok": True, "result": result}).encode() + b"\n"


def test_garbage_answer_returns_the_default(peer, socket_path: str) -> None:
    scripted(peer, lambda req: b"this is not json\n")
    with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
        d = c.evaluate("f", default="fallback")
    assert (d.value, d.reason, d.error_code) == ("fallback", "ERROR", "UNINTELLIGIBLE")


def test_answer_with_another_id_drops_the_connection(peer, socket_path: str) -> None:
    p = scripted(peer, lambda req: ok({"id": "not yours"}, {"key": "f", "value": True, "reason": "STATIC"}))
    with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
        assert c.evaluate("f", default="fallback").error_code == "UNINTELLIGIBLE"
        assert c.evaluate("f", default="fallback").error_code == "UNINTELLIGIBLE"
    assert p.connections == 2  # the mismatched connection was not reused


def test_silent_agent_times_out_within_the_timeout(peer, socket_path: str) -> None:
    scripted(peer, lambda req: None)
    with FlagClient(socket_path, timeout=0.2) as c:
        started = time.perf_counter()
        d = c.evaluate("f", default="fallback")
        elapsed = time.perf_counter() - started
    assert (d.value, d.error_code) == ("fallback", "GENERAL")
    assert 0.19 < elapsed < 0.6  # the timeout bounds the call (plus scheduling slack)


def test_busy_refusal_is_passed_on(peer, socket_path: str) -> None:
    busy = {"ok": False, "error": {"code": "BUSY", "message": "too many connections"}}
    scripted(peer, lambda req: json.dumps(busy).encode() + b"\n")
    with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
        d = c.evaluate("f", default=1)
    assert (d.value, d.error_code) == (1, "BUSY")


def test_value_of_the_wrong_type_is_a_type_mismatch(peer, socket_path: str) -> None:
    scripted(peer, lambda req: ok(req, {"key": "f", "value": "yes", "variant": "y", "reason": "STATIC", "revision": 1}))
    with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
        assert c.is_enabled("f", default=True) is True
        assert c.evaluate("f", default=False, type="boolean").error_code == "TYPE_MISMATCH"


def test_answer_split_across_writes_is_reassembled(peer, socket_path: str) -> None:
    def script(req: dict) -> bytes:
        return b"\n  \n" + ok(req, {"key": "f", "value": [1, 2], "reason": "STATIC", "revision": 1})

    scripted(peer, script)
    with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
        assert c.evaluate("f", type="object").value == [1, 2]


def test_refused_subscribe_leaves_the_cache_off(peer, socket_path: str) -> None:
    answers = {"evaluate": lambda req: ok(req, {"key": "f", "value": True, "reason": "STATIC", "revision": 1})}

    def script(req: dict) -> bytes:
        if req["op"] in answers:
            return answers[req["op"]](req)
        return json.dumps({"id": req.get("id"), "ok": False, "error": {"code": "UNKNOWN_OP", "message": "?"}}).encode() + b"\n"

    p = scripted(peer, script)
    events: list[dict] = []
    refused = threading.Event()

    def on_event(event: dict) -> None:
        events.append(event)
        refused.set()

    with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT, cache=True, on_event=on_event) as c:
        assert refused.wait(5)
        assert not c.subscribed
        for _ in range(3):
            assert c.evaluate("f").value is True
        # Without a live subscription nothing is cached: every call asks the agent.
        assert c.evaluate("f") is not c.evaluate("f")
    assert events[0]["event"] == "disconnected"
    assert "UNKNOWN_OP" in events[0]["message"]
    assert p.connections >= 2
