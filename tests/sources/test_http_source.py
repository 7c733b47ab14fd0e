"""An http(s):// flag source through a real agent and a real HTTP server on loopback: fetched
with If-None-Match, re-fetched every poll interval, a bad or missing version never replaces a
good one, and the last good version kept on disk serves an agent started while the server is down."""

from __future__ import annotations

import json

import pytest
import trio

from agent.sources.base import LoadOptions, SourceState
from agent.sources.http import HttpSource
from tests.helpers import LineClient
from tests.process import flagsock


def _doc(value: str) -> bytes:
    return json.dumps({"flags": {"banner": {"state": "ENABLED", "variants": {"v": value}, "defaultVariant": "v"}}}).encode()


async def _banner(c: LineClient) -> object:
    answer = await c.request({"op": "evaluate", "flag": "banner"})
    return answer["result"]["value"] if answer["ok"] else answer["error"]["code"]


async def test_an_http_source_is_served_and_revalidated_with_its_etag(start_agent, flag_server):
    flag_server.body = _doc("one")
    running = await start_agent([flag_server.url], poll_interval=0.05)
    async with await LineClient.connect(running.socket_path) as c, \
            await LineClient.connect(running.socket_path) as events:
        await events.result({"op": "subscribe"})
        assert await _banner(c) == "one"
        flag_server.body = _doc("two")
        event = await events.receive()
        assert event == {"event": "changed", "revision": event["revision"], "flags": {"banner": "updated"}}
        assert await _banner(c) == "two"
        health = await c.result({"op": "health"})
        source = health["sources"][0]
        assert health["status"] == "ok" and source["kind"] == "http" and source["stale"] is False
        assert source["fetched_at"].endswith("Z")
    # Unchanged content is revalidated, not fetched again.
    assert any(r["if_none_match"] for r in flag_server.requests), flag_server.requests


@pytest.mark.parametrize("failure", ["status", "invalid", "down"])
async def test_a_failing_server_keeps_the_last_good_version_and_says_so(start_agent, flag_server, failure):
    flag_server.body = _doc("good")
    running = await start_agent([flag_server.url], poll_interval=0.05)
    async with await LineClient.connect(running.socket_path) as c, \
            await LineClient.connect(running.socket_path) as events:
        await events.result({"op": "subscribe"})
        if failure == "status":
            flag_server.status = 503
        elif failure == "invalid":
            flag_server.body = b'{"flags": {"banner": {"state": "ENABLED", "variants": {"v": 1}, "defaultVariant": "x"}}}'
        else:
            flag_server.stop()
        event = await events.receive()
        assert event["event"] == "reload_failed" and flag_server.url in event["source"], event
        assert await _banner(c) == "good"
        health = await c.result({"op": "health"})
        assert health["status"] == "degraded"
        assert health["last_error"]["source"] == flag_server.url
        if failure != "invalid":
            assert health["sources"][0]["stale"] is True
        else:
            assert "defaultVariant" in health["last_error"]["message"]


async def test_the_last_good_version_on_disk_serves_a_start_while_the_server_is_down(
        start_agent, flag_server, tmp_path):
    state = tmp_path / "state"
    flag_server.body = _doc("kept")
    first = await start_agent([flag_server.url], poll_interval=0.05, state_dir=str(state),
                              socket=str(tmp_path / "a1.sock"))
    async with await LineClient.connect(first.socket_path) as c:
        assert await _banner(c) == "kept"
    first.stop()
    # Kept before it was served: the version is written durably inside the load that swaps it in.
    assert len(list((state / "sources").glob("*.cache"))) == 1

    flag_server.status = 503
    second = await start_agent([flag_server.url], poll_interval=0.05, state_dir=str(state),
                               socket=str(tmp_path / "a2.sock"))
    async with await LineClient.connect(second.socket_path) as c, \
            await LineClient.connect(second.socket_path) as events:
        assert await _banner(c) == "kept"
        health = await c.result({"op": "health"})
        assert health["status"] == "degraded" and health["sources"][0]["stale"] is True
        await events.result({"op": "subscribe"})
        flag_server.status = 200
        flag_server.body = _doc("caught up")
        while (await events.receive())["event"] != "changed":
            pass
        assert await _banner(c) == "caught up"
        assert (await c.result({"op": "health"}))["status"] == "ok"


async def test_writes_to_an_http_source_are_refused_read_only(start_agent, flag_server):
    flag_server.body = _doc("x")
    running = await start_agent([flag_server.url], poll_interval=0.05)
    async with await LineClient.connect(running.socket_path) as c:
        answer = await c.request({"op": "set", "flag": "banner", "enabled": True})
        assert answer["error"]["code"] == "READ_ONLY", answer
        assert "fetched over HTTP" in answer["error"]["message"]


async def test_a_server_that_hangs_or_sends_too_much_is_an_error_not_a_stall(flag_server):
    import httpx

    hung_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = hung_listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        async def accept_and_ignore() -> None:
            streams = []
            while True:
                streams.append(await hung_listeners[0].accept())

        nursery.start_soon(accept_and_ignore)
        hung = HttpSource(f"http://127.0.0.1:{port}/flags.json", timeout=0.3)
        async with httpx.AsyncClient(timeout=0.3) as client:
            with trio.fail_after(5):
                await hung.fetch(client)
        outcome = hung.load(SourceState(path=hung.name), LoadOptions())
        assert outcome.error is not None and "cannot fetch" in outcome.error

        flag_server.body = b" " * 5000 + _doc("big")
        big = HttpSource(flag_server.url, max_bytes=4096)
        async with httpx.AsyncClient() as client:
            await big.fetch(client)
        assert "larger than the limit of 4096 bytes" in big.load(SourceState(path=big.name), LoadOptions()).error
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("source", ["ftp://example.invalid/flags.json", "s3://bucket/flags.json"])
def test_an_unknown_kind_of_source_is_refused_at_start(source, sock_dir):
    out = flagsock("serve", "--flags", source, "--socket", str(sock_dir / "x.sock"))
    assert out.returncode == 2 and "unknown kind of source" in out.stderr and "Traceback" not in out.stderr
