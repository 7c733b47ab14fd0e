"""The client keeps its promises against a hostile or broken agent.

Every peer here is a real Unix-socket server (tests/client/hostile.py) that misbehaves on
purpose: an endless line, a byte at a time, JSON nested thousands deep, garbage, a BUSY refusal
and a close, an answer broken off midway. Each attack is tried through every way in: the flag
path (``evaluate``, which must return the default and say why), the tool path
(``FlagClient.request``) and the one-shot :func:`protocol.client.call` (which raise typed
errors), and the event streams.

The new names are looked up on the module at run time (``fc.call``), not imported, so that each
test runs, and fails for its own reason, against a client that lacks them.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import queue
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from protocol import client as fc
from protocol.client import FlagClient

from .conftest import Agent, _running_agent, _short_socket_path, wait_for
from .hostile import Link, answer, answers, nested, refusal

# Generous, so that a busy test machine does not turn an answer into a timeout.
LOADED_MACHINE_TIMEOUT = 4.0
# How late a call may return after its timeout on a loaded machine.
LATENESS_S = 0.4
# What a hostile peer tries to push through one connection.
FLOOD_BYTES = 48 << 20
# What the kernel may hold between the peer's send and the client's read, besides the line the
# client reads itself.
SOCKET_SLACK = 4 << 20
SMALL_LIMIT = 64 << 10

ENTRY_POINTS = ("evaluate", "request", "call")

EVALUATE_RESULT = {"key": "f", "value": True, "variant": "on", "reason": "STATIC", "metadata": {}, "revision": 1}


def ask(entry: str, path: str, timeout: float = LOADED_MACHINE_TIMEOUT, **options: Any) -> tuple[str, str, str]:
    """Ask for flag ``f`` through ``entry``, expecting a failure: (how it failed, code, message).

    ``evaluate`` must return the caller's default; ``request`` and ``call`` must raise a
    FlagsockError. How it failed is "details" for ``evaluate``, else the exception's class name.
    """
    if entry == "evaluate":
        with FlagClient(path, timeout=timeout, **options) as c:
            d = c.evaluate("f", {"targetingKey": "u1"}, default="fallback")
        assert (d.value, d.reason) == ("fallback", "ERROR"), d.error_message
        return "details", d.error_code, d.error_message
    try:
        if entry == "request":
            with FlagClient(path, timeout=timeout, **options) as c:
                result = c.request("evaluate", flag="f")
        else:
            result = fc.call(path, {"op": "evaluate", "flag": "f"}, timeout=timeout, **options)
    except fc.FlagsockError as exc:
        return type(exc).__name__, exc.code, exc.message
    pytest.fail(f"{entry} returned a {type(result).__name__} instead of failing")


def unintelligible(entry: str) -> tuple[str, str]:
    return ("details" if entry == "evaluate" else "AgentUnintelligible"), "UNINTELLIGIBLE"


def unreachable(entry: str) -> tuple[str, str]:
    return ("details" if entry == "evaluate" else "AgentUnreachable"), "GENERAL"


def refused(entry: str, code: str) -> tuple[str, str]:
    return ("details" if entry == "evaluate" else "AgentRefused"), code


# -- an endless line ----------------------------------------------------------------------------

ENDLESS = {
    "garbage": (b"", b"x" * 65536),
    "a blank line": (b"", b" " * 65536),
    "an answer": (b'{"id":1,"ok":true,"result":{"key":"f","value":"', b"a" * 65536),
}


def flood_after_request(prefix: bytes, chunk: bytes) -> Callable[[Link], None]:
    def handler(link: Link) -> None:
        if link.request() is None:
            return
        link.send(prefix)
        link.flood(chunk, FLOOD_BYTES)
        link.hold()

    return handler


@pytest.mark.parametrize("limit", [None, SMALL_LIMIT], ids=["default limit", "64 KiB limit"])
@pytest.mark.parametrize("shape", sorted(ENDLESS))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_endless_answer_is_cut_off_at_the_line_limit(peer, socket_path: str, entry: str, shape: str, limit: int | None) -> None:
    p = peer(flood_after_request(*ENDLESS[shape]))
    options = {} if limit is None else {"max_line_bytes": limit}
    started = time.monotonic()
    how, code, message = ask(entry, socket_path, **options)
    assert (how, code) == unintelligible(entry), message
    assert "max_line_bytes" in message
    # It gave up because of the limit, long before the timeout, having read little past it.
    assert time.monotonic() - started < LOADED_MACHINE_TIMEOUT / 2
    assert p.links[0].sent < (limit or 1 << 20) + SOCKET_SLACK


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_the_line_limit_is_the_callers_to_set(peer, socket_path: str, entry: str) -> None:
    value = "v" * 5000
    peer(answers(lambda req: answer(req, {**EVALUATE_RESULT, "value": value})))
    how, code, _ = ask(entry, socket_path, max_line_bytes=4096)
    assert (how, code) == unintelligible(entry)
    if entry == "evaluate":
        with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT, max_line_bytes=8192) as c:
            assert c.evaluate("f").value == value
    elif entry == "request":
        with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT, max_line_bytes=8192) as c:
            assert c.request("evaluate", flag="f")["value"] == value
    else:
        assert fc.call(socket_path, {"op": "evaluate", "flag": "f"}, max_line_bytes=8192)["value"] == value


def flood_after_subscribe(prefix: bytes) -> Callable[[Link], None]:
    def handler(link: Link) -> None:
        req = link.request()
        if req is None:
            return
        link.send(answer(req, {"revision": 1}))
        link.send(prefix)
        link.flood(b"k" * 65536, FLOOD_BYTES)
        link.hold()

    return handler


def first_events(how: str, path: str, count: int, **options: Any) -> list[dict[str, Any]]:
    """The first ``count`` events through ``how``: the cache's thread, watch() or subscribe().

    From subscribe(), which raises where the others report ``disconnected``, the error becomes a
    ``{"event": "raised", "class", "code", "message"}`` entry.
    """
    if how == "cache":
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        with FlagClient(path, timeout=LOADED_MACHINE_TIMEOUT, cache=True, on_event=events.put, **options):
            return [events.get(timeout=10) for _ in range(count)]
    if how == "watch":
        with FlagClient(path, timeout=LOADED_MACHINE_TIMEOUT, **options) as c:
            return list(itertools.islice(c.watch(reconnect=count > 2), count))
    got: list[dict[str, Any]] = []
    stream = fc.subscribe(path, timeout=LOADED_MACHINE_TIMEOUT, **options)
    try:
        for event in stream:
            got.append(event)
            if len(got) == count:
                break
    except fc.FlagsockError as exc:
        got.append({"event": "raised", "class": type(exc).__name__, "code": exc.code, "message": exc.message})
    finally:
        stream.close()
    return got


@pytest.mark.parametrize("limit", [None, SMALL_LIMIT], ids=["default limit", "64 KiB limit"])
@pytest.mark.parametrize("prefix", [b"", b'{"event":"changed","revision":2,"flags":{"'], ids=["garbage", "an event"])
@pytest.mark.parametrize("how", ["cache", "watch", "subscribe"])
def test_an_endless_event_line_ends_the_subscription_not_the_memory(
    peer, socket_path: str, how: str, prefix: bytes, limit: int | None
) -> None:
    p = peer(flood_after_subscribe(prefix))
    options = {} if limit is None else {"max_line_bytes": limit}
    subscribed, lost = first_events(how, socket_path, 2, **options)
    assert subscribed == {"event": "subscribed", "revision": 1}
    if how == "subscribe":
        assert (lost["class"], lost["code"]) == ("AgentUnintelligible", "UNINTELLIGIBLE")
    else:
        assert lost["event"] == "disconnected"
    assert "max_line_bytes" in lost["message"]
    assert p.links[0].sent < (limit or 1 << 20) + SOCKET_SLACK


# -- a trickle ----------------------------------------------------------------------------------


def answer_prefix_bytes(req: dict[str, Any]) -> Iterator[bytes]:
    """An answer that starts well and never ends, one byte at a time."""
    start = b'{"id":%s,"ok":true,"result":{"key":"f","value":"' % json.dumps(req.get("id")).encode()
    yield from (start[i : i + 1] for i in range(len(start)))
    yield from itertools.repeat(b"a")


TRICKLES: dict[str, Callable[[dict[str, Any]], Iterator[bytes]]] = {
    "an answer, a byte at a time": answer_prefix_bytes,
    "blank lines": lambda req: itertools.repeat(b" \r\n"),
    "a blank line that never ends": lambda req: itertools.repeat(b" "),
    "event lines": lambda req: itertools.repeat(b'{"event":"changed","revision":1,"flags":{}}\n'),
}


def trickle(pieces: Callable[[dict[str, Any]], Iterator[bytes]], every: float) -> Callable[[Link], None]:
    def handler(link: Link) -> None:
        req = link.request()
        if req is not None:
            link.trickle(pieces(req), every)

    return handler


@pytest.mark.parametrize("entry", ["evaluate", "call"])
def test_an_agent_trickling_a_byte_every_200ms_cannot_stretch_a_2s_call(peer, socket_path: str, entry: str) -> None:
    peer(trickle(answer_prefix_bytes, 0.2))
    started = time.monotonic()
    how, code, _ = ask(entry, socket_path, timeout=2.0)
    elapsed = time.monotonic() - started
    assert (how, code) == unreachable(entry)
    assert 1.9 < elapsed < 2.0 + LATENESS_S


@pytest.mark.parametrize("shape", sorted(TRICKLES))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_trickled_answer_cannot_stretch_a_call_past_its_timeout(peer, socket_path: str, entry: str, shape: str) -> None:
    peer(trickle(TRICKLES[shape], 0.05))
    started = time.monotonic()
    how, code, message = ask(entry, socket_path, timeout=0.6)
    elapsed = time.monotonic() - started
    assert (how, code) == unreachable(entry), message
    assert 0.55 < elapsed < 0.6 + LATENESS_S


@pytest.mark.parametrize("shape", sorted(TRICKLES))
@pytest.mark.parametrize("how", ["watch", "subscribe"])
def test_a_trickled_subscribe_answer_cannot_stretch_the_handshake(peer, socket_path: str, how: str, shape: str) -> None:
    peer(trickle(TRICKLES[shape], 0.05))
    started = time.monotonic()
    if how == "watch":
        with FlagClient(socket_path, timeout=0.6) as c:
            (event,) = list(c.watch(reconnect=False))
        assert event["event"] == "disconnected"
    else:
        with pytest.raises(fc.AgentUnreachable):
            next(fc.subscribe(socket_path, timeout=0.6))
    assert time.monotonic() - started < 0.6 + LATENESS_S


# -- deep nesting -------------------------------------------------------------------------------


def deep_answer(where: str, depth: int) -> Callable[[dict[str, Any]], bytes]:
    def make(req: dict[str, Any]) -> bytes:
        rid = json.dumps(req.get("id"))
        deep = nested(depth)
        text = {
            "the whole line": deep,
            "the value": f'{{"id":{rid},"ok":true,"result":{{"key":"f","value":{deep},"reason":"STATIC"}}}}',
            "the objects of the value": (
                f'{{"id":{rid},"ok":true,"result":{{"key":"f","value":' + '{"a":' * depth + "1" + "}" * depth + "}}"
            ),
            "the id": f'{{"id":{deep},"ok":true,"result":{{}}}}',
            "the error": f'{{"id":{rid},"ok":false,"error":{deep}}}',
        }[where]
        return text.encode() + b"\n"

    return make


DEEP_PLACES = ["the whole line", "the value", "the objects of the value", "the id", "the error"]


@pytest.mark.parametrize("depth", [300, 1000, 5000])
@pytest.mark.parametrize("where", DEEP_PLACES)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_deeply_nested_answer_is_unintelligible_not_a_recursion_error(
    peer, socket_path: str, entry: str, where: str, depth: int
) -> None:
    peer(answers(deep_answer(where, depth)))
    how, code, message = ask(entry, socket_path)
    assert (how, code) == unintelligible(entry), message
    assert "nested" in message


def with_frames_left(frames: int, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` with only about ``frames`` frames left before the recursion limit."""
    used = len(inspect.stack(0))

    def descend(n: int) -> Any:
        return fn() if n <= 0 else descend(n - 1)

    return descend(sys.getrecursionlimit() - used - frames)


@pytest.mark.parametrize("depth", [100, 200])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_answer_too_deep_for_the_callers_stack_is_unintelligible_not_a_recursion_error(
    peer, socket_path: str, entry: str, depth: int
) -> None:
    """An answer within the client's depth limit, decoded by a caller already deep in its stack."""
    peer(answers(deep_answer("the value", depth)))
    deep_value = json.loads(nested(depth))
    # From an ordinary stack, the answer is fine.
    if entry == "call":
        assert fc.call(socket_path, {"op": "evaluate", "flag": "f"})["value"] == deep_value
    else:
        with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
            assert c.evaluate("f").value == deep_value
    how, code, message = with_frames_left(60, lambda: ask(entry, socket_path))
    assert (how, code) == unintelligible(entry), message
    assert "nested" in message


def deep_mapping(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"n": node}
    return node


@pytest.mark.parametrize("depth", [1000, 5000])
def test_a_context_too_deep_to_encode_returns_the_default(served: Agent, depth: int) -> None:
    context = {"targetingKey": "u1", "deep": deep_mapping(depth)}
    with FlagClient(served.socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
        d = c.evaluate("dark_mode", context, default="fallback")
        assert (d.value, d.error_code) == ("fallback", "INVALID_CONTEXT")
        assert c.is_enabled("dark_mode", user_id="u1", context=context, default=False) is False
        assert c.all_flags(context) == {}
        assert c.all_flags({"targetingKey": "u1"})["dark_mode"] is True
        with pytest.raises(fc.FlagsockError) as info:
            c.request("evaluate", flag="dark_mode", context=context)
        assert info.value.code == "INVALID_CONTEXT"
    with pytest.raises(ValueError):
        fc.call(served.socket_path, {"op": "evaluate", "flag": "dark_mode", "context": context})


# -- garbage ------------------------------------------------------------------------------------


def with_id(template: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda req: template.replace(b"ID", json.dumps(req.get("id")).encode()) + b"\n"


GARBAGE: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "not JSON": with_id(b"this is not json"),
    "binary": with_id(b"\x00\xff\xfe\x01\x02garbage"),
    "invalid UTF-8 in a string": with_id(b'{"id":ID,"ok":true,"result":{"key":"f","value":"\xc3\x28"}}'),
    "a UTF-8-encoded surrogate": with_id(b'{"id":ID,"ok":true,"result":{"key":"f","value":"\xed\xa0\x80"}}'),
    "an array": with_id(b"[1,2,3]"),
    "a string": with_id(b'"ok"'),
    "NaN": with_id(b"NaN"),
    "NaN as the value": with_id(b'{"id":ID,"ok":true,"result":{"key":"f","value":NaN}}'),
    "neither ok nor error": with_id(b'{"id":ID}'),
    "ok that is not a boolean": with_id(b'{"id":ID,"ok":"yes","result":{}}'),
    "a result that is not an object": with_id(b'{"id":ID,"ok":true,"result":[1]}'),
    "an error that is not an object": with_id(b'{"id":ID,"ok":false,"error":"oops"}'),
    "an error without a code": with_id(b'{"id":ID,"ok":false,"error":{"message":"?"}}'),
    "an integer too long to read": with_id(b'{"id":ID,"ok":true,"result":{"key":"f","value":1' + b"0" * 5000 + b"}}"),
    "another request's id": lambda req: answer({"id": 7777}, EVALUATE_RESULT),
    "the id as a string": lambda req: answer({"id": str(req.get("id"))}, EVALUATE_RESULT),
    "a line cut short": with_id(b'{"id":ID,"ok":tr'),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_garbage_is_reported_as_an_agent_that_cannot_be_understood(peer, socket_path: str, entry: str, kind: str) -> None:
    peer(answers(GARBAGE[kind]))
    how, code, message = ask(entry, socket_path)
    assert (how, code) == unintelligible(entry), message
    assert message.startswith("the flagsock agent cannot be understood")


# -- BUSY, then close ---------------------------------------------------------------------------

BUSY = refusal("BUSY", "the agent is serving its limit of 1 connections; retry shortly")


def refuse_busy(shape: str) -> Callable[[Link], None]:
    """Refuse each connection as the agent does at its limit: one BUSY line, then close, unread."""

    def handler(link: Link) -> None:
        if shape == "in two writes":
            link.send(BUSY[:12])
            link.send(BUSY[12:])
        elif shape == "with CRLF":
            link.send(BUSY[:-1] + b"\r\n")
        else:
            link.send(BUSY)

    return handler


def ask_with(entry: str, path: str, context: dict[str, Any]) -> tuple[str, str, str]:
    if entry == "evaluate":
        with FlagClient(path, timeout=LOADED_MACHINE_TIMEOUT) as c:
            d = c.evaluate("f", context, default="fallback")
        assert (d.value, d.reason) == ("fallback", "ERROR")
        return "details", d.error_code, d.error_message
    try:
        if entry == "request":
            with FlagClient(path, timeout=LOADED_MACHINE_TIMEOUT) as c:
                c.request("evaluate", flag="f", context=context)
        else:
            fc.call(path, {"op": "evaluate", "flag": "f", "context": context}, timeout=LOADED_MACHINE_TIMEOUT)
    except fc.FlagsockError as exc:
        return type(exc).__name__, exc.code, exc.message
    pytest.fail(f"{entry} did not fail")


# Larger than a Unix socket's buffers: the agent closes before the request is written whole.
LARGE_CONTEXT = {"targetingKey": "u1", "blob": "x" * (4 << 20)}
SMALL_CONTEXT = {"targetingKey": "u1"}


@pytest.mark.parametrize("size", ["small", "large"], ids=["small request", "request larger than the socket buffer"])
@pytest.mark.parametrize("shape", ["at once", "in two writes", "with CRLF"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_busy_then_close_is_reported_as_busy(peer, socket_path: str, entry: str, shape: str, size: str) -> None:
    peer(refuse_busy(shape))
    how, code, message = ask_with(entry, socket_path, LARGE_CONTEXT if size == "large" else SMALL_CONTEXT)
    assert (how, code) == refused(entry, "BUSY"), message
    assert "limit of 1 connections" in message


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """A real agent at its limit of one connection, which this fixture holds."""
    workdir = tmp_path_factory.mktemp("crowded")
    for path in _short_socket_path(workdir):
        for agent in _running_agent(workdir, path, ["--max-connections", "1"]):
            # The start-up check's own connection may not have been counted out yet: until it
            # is, the holder is refused too.
            holder = wait_for(lambda: hold_a_connection(path), what="the agent to accept the holder")
            with holder:
                yield agent


def hold_a_connection(path: str) -> socket.socket | None:
    """A connection the agent accepted and answered on, or None if it refused it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(LOADED_MACHINE_TIMEOUT)
    sock.connect(path)
    sock.sendall(b'{"op":"ping","id":1}\n')
    if b'"ok":true' in sock.recv(65536):
        return sock
    sock.close()
    return None


@pytest.mark.parametrize("size", ["small", "large"], ids=["small request", "request larger than the socket buffer"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_real_agent_at_its_limit_is_reported_as_busy(crowded: Agent, entry: str, size: str) -> None:
    how, code, message = ask_with(entry, crowded.socket_path, LARGE_CONTEXT if size == "large" else SMALL_CONTEXT)
    assert (how, code) == refused(entry, "BUSY"), message


@pytest.mark.parametrize("how", ["cache", "watch", "subscribe"])
def test_a_subscription_refused_as_busy_says_busy(crowded: Agent, how: str) -> None:
    (event,) = first_events(how, crowded.socket_path, 1)
    if how == "subscribe":
        assert (event["class"], event["code"]) == ("AgentRefused", "BUSY")
    else:
        assert event["event"] == "disconnected"
        assert "BUSY" in event["message"]


# -- closed mid-line ----------------------------------------------------------------------------

CUTS = {"after one byte": 1, "halfway": 40, "just before the newline": -1}


def answer_then_break_off(cut: int, whole_first: int) -> Callable[[Link], None]:
    """Answer ``whole_first`` requests whole, then the next one only up to ``cut``, and close."""

    def handler(link: Link) -> None:
        for _ in range(whole_first):
            req = link.request()
            if req is None:
                return
            link.send(answer(req, EVALUATE_RESULT))
        req = link.request()
        if req is not None:
            link.send(answer(req, EVALUATE_RESULT)[:cut])

    return handler


@pytest.mark.parametrize("cut", sorted(CUTS))
@pytest.mark.parametrize("op", ["evaluate", "set"])
def test_an_answer_broken_off_midway_on_a_pooled_connection_is_not_sent_again(
    peer, socket_path: str, op: str, cut: str
) -> None:
    """Part of the answer came, so the agent acted on the request: sending it again could apply
    a write twice."""
    p = peer(answer_then_break_off(CUTS[cut], whole_first=1))
    with FlagClient(socket_path, timeout=LOADED_MACHINE_TIMEOUT) as c:
        if op == "evaluate":
            assert c.evaluate("f").value is True
            d = c.evaluate("f", default="fallback")
            assert (d.value, d.error_code) == ("fallback", "GENERAL")
            message = d.error_message
        else:
            c.request("set", flag="f", enabled=True)
            with pytest.raises(fc.FlagsockError) as info:
                c.request("set", flag="f", enabled=False)
            assert (type(info.value).__name__, info.value.code) == ("AgentUnreachable", "GENERAL")
            message = info.value.message
    assert "in the middle of a line" in message
    assert len(p.requests) == 2
    assert p.connections == 1


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_call_reports_an_answer_broken_off_midway_as_unreachable(peer, socket_path: str, cut: str) -> None:
    peer(answer_then_break_off(CUTS[cut], whole_first=0))
    with pytest.raises(fc.AgentUnreachable) as info:
        fc.call(socket_path, {"op": "ping"}, timeout=LOADED_MACHINE_TIMEOUT)
    assert info.value.code == "GENERAL"
    assert "in the middle of a line" in info.value.message


# -- bad event lines ----------------------------------------------------------------------------

BAD_EVENTS = {
    "an event name that is an array": b'{"event":["changed"],"revision":2,"flags":{}}',
    "an event name that is an object": b'{"event":{"a":1},"revision":2}',
    "an event without a name": b'{"revision":2,"flags":{}}',
    "garbage": b"not json",
    "an array": b"[1]",
    "nested 5000 deep": nested(5000).encode(),
    "an event nested 1000 deep": b'{"event":"changed","revision":2,"flags":' + nested(1000).encode() + b"}",
}


def subscribe_then_send(line: bytes) -> Callable[[Link], None]:
    def handler(link: Link) -> None:
        req = link.request()
        if req is None:
            return
        link.send(answer(req, {"revision": 1}))
        link.send(line + b"\n")
        link.hold()

    return handler


@pytest.mark.parametrize("kind", sorted(BAD_EVENTS))
def test_a_bad_event_line_restarts_the_subscription_quietly(
    peer, socket_path: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    p = peer(subscribe_then_send(BAD_EVENTS[kind]))
    caplog.set_level(logging.DEBUG, logger="flagsock.client")
    events = first_events("cache", socket_path, 3, max_backoff=0.05)
    assert [e["event"] for e in events] == ["subscribed", "disconnected", "subscribed"]
    assert "cannot be understood" in events[1]["message"]
    assert p.connections >= 2
    assert [r for r in caplog.records if r.exc_info] == []


# -- the timeout of a pooled connection ---------------------------------------------------------


def test_a_slow_answer_does_not_shorten_the_next_calls_timeout(peer, socket_path: str) -> None:
    """A call that needed two reads late in its time leaves its pooled socket with a short
    timeout; the next call on that socket still gets its whole timeout."""

    def handler(link: Link) -> None:
        req = link.request()
        if req is None:
            return
        line = answer(req, EVALUATE_RESULT)
        if link.peer.stopping.wait(1.2):
            return
        link.send(line[:10])
        if link.peer.stopping.wait(0.05):
            return
        link.send(line[10:])
        req = link.request()
        if req is None or link.peer.stopping.wait(1.2):
            return
        link.send(answer(req, EVALUATE_RESULT))
        link.hold()

    peer(handler)
    with FlagClient(socket_path, timeout=2.0, pool_size=1) as c:
        assert c.evaluate("f").value is True
        d = c.evaluate("f", default="fallback")
        assert (d.value, d.error_code) == (True, None), d.error_message
