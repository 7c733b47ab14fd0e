"""The OFREP change stream (ADR-0008) and the probes, against a real agent and real file writes."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import httpx
import trio

from tests.helpers import write_json

from .conftest import BareService
from .flags import flags
from .rawhttp import RawHttp, encode, ofrep_body

EVENTS = "/ofrep/v1/events"
BULK = "/ofrep/v1/evaluate/flags"


class Events:
    """Reads an SSE stream (httpx) into events: dicts of field -> value, comments under ":"."""

    def __init__(self, lines) -> None:
        self.lines = lines

    async def next(self, timeout: float = 5.0) -> dict[str, str]:
        event: dict[str, str] = {}
        with trio.fail_after(timeout):
            async for line in self.lines:
                if not line:
                    if event:
                        return event
                    continue
                field, _, value = line.partition(":")
                event[field or ":"] = value[1:] if value.startswith(" ") else value
        raise AssertionError(f"the stream ended; partial event {event}")


async def open_events(client: httpx.AsyncClient, stack, headers=None) -> Events:
    response = await stack.enter_async_context(client.stream("GET", EVENTS, headers=headers or {}))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return Events(response.aiter_lines())


async def test_file_change_reaches_a_listener_as_refetch_evaluation_with_a_new_etag(http_agent, tmp_path):
    path = write_json(tmp_path / "flags.json", flags())
    served = await http_agent([path])
    async with httpx.AsyncClient(base_url=served.url) as client:
        before = await client.post(BULK, content=ofrep_body())
        async with AsyncExitStack() as stack:
            events = await open_events(client, stack)
            hello = await events.next()
            assert hello["retry"] == "1000" and "revision" in hello[":"]
            write_json(path, flags(int_flag={"state": "ENABLED", "variants": {"nine": 9}, "defaultVariant": "nine"}))
            event = await events.next(timeout=3)
        assert event["event"] == "message"
        data = json.loads(event["data"])
        assert data["type"] == "refetchEvaluation"
        assert data["etag"].startswith('"') and isinstance(data["lastModified"], int)
        revision = served.running.service.store.snapshot.revision
        assert event["id"].endswith(f"-{revision}")
        after = await client.post(BULK, content=ofrep_body(), headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
        assert {f["key"]: f for f in after.json()["flags"]}["int-flag"]["value"] == 9


async def test_stream_over_the_unix_socket(http_agent, tmp_path):
    path = write_json(tmp_path / "flags.json", flags())
    served = await http_agent([path])
    transport = httpx.AsyncHTTPTransport(uds=served.unix_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        async with AsyncExitStack() as stack:
            events = await open_events(client, stack)
            await events.next()
            write_json(path, flags(bool_flag=None))
            event = await events.next(timeout=3)
            assert json.loads(event["data"])["type"] == "refetchEvaluation"


async def test_last_event_id_from_the_past_gets_a_refetch_at_once(http_server):
    served = await http_server()
    async with httpx.AsyncClient(base_url=served.url) as client:
        async with AsyncExitStack() as stack:
            events = await open_events(client, stack, {"Last-Event-ID": "0123abcd-7"})
            hello = await events.next()
            assert "retry" in hello and "data" not in hello
            event = await events.next(timeout=1)  # sent with the hello, no change needed
            assert json.loads(event["data"])["type"] == "refetchEvaluation"
            assert event["id"] == hello["id"]


async def test_current_last_event_id_gets_no_replay(http_server):
    service = BareService()
    served = await http_server(service)
    async with httpx.AsyncClient(base_url=served.url) as client:
        async with AsyncExitStack() as stack:
            first = await open_events(client, stack, {"Last-Event-ID": "nothing-yet"})
            hello = await first.next()
            current = hello["id"]  # the current id, as a reconnecting client would hold it
            assert json.loads((await first.next())["data"])["type"] == "refetchEvaluation"
        async with AsyncExitStack() as stack:
            again = await open_events(client, stack, {"Last-Event-ID": current})
            hello = await again.next()
            assert "data" not in hello and hello["id"] == current
            service.store.install(_prepared(service.store, 1))
            event = await again.next()  # the first event after the hello is the new change, not a replay
            assert event["id"] != current and event["id"].endswith("-1")


async def test_idle_stream_gets_keep_alive_comments(http_server, autojump_clock):
    served = await http_server(keepalive=10)
    async with await RawHttp.tcp(served.port) as client:
        await client.send(encode("GET", EVENTS))
        head = await client.response(head=True)
        assert head.status == 200 and head.headers["transfer-encoding"] == "chunked"
        start = trio.current_time()
        with trio.fail_after(60):
            while client.buffer.count(b": keep-alive") < 2:
                assert await client._fill()
        assert 20 <= trio.current_time() - start < 21


async def test_a_listener_that_falls_behind_is_disconnected(http_server, sock_dir):
    from agent.store.store import Store

    service = BareService(store=Store([], subscriber_queue=4))
    served = await http_server(service)
    async with await RawHttp.unix(served.unix_path) as client:
        await client.send(encode("GET", EVENTS))
        assert (await client.response(head=True)).status == 200
        with trio.fail_after(5):
            while service.store.subscriber_count == 0:
                await trio.sleep(0.01)
        for i in range(50):  # faster than anyone can read: no checkpoint in between
            service.store.install(_prepared(service.store, i))
        assert await client.closed()
    assert service.store.subscriber_count == 0


def _prepared(store, i):
    from agent.store.snapshot import Prepared

    return Prepared(sources=(), flags={}, content_hash=f"h{i}", changes={f"flag-{i}": "added"},
                    base_revision=store.snapshot.revision)


async def test_shutdown_ends_open_streams(http_server):
    served = await http_server()
    async with await RawHttp.tcp(served.port) as client:
        await client.send(encode("GET", EVENTS))
        assert (await client.response(head=True)).status == 200
        served.server.shutdown()
        assert await client.closed()


# -- probes -------------------------------------------------------------------------------------

async def test_healthz_and_readyz_when_every_source_is_loaded(http_agent, tmp_path):
    served = await http_agent([write_json(tmp_path / "flags.json", flags())])
    async with await RawHttp.tcp(served.port) as client:
        health = await client.request("GET", "/healthz")
        assert health.status == 200 and health.json()["status"] == "serving"
        ready = await client.request("GET", "/readyz")
        assert ready.status == 200
        body = ready.json()
        assert body["status"] == "ok" and body["sources"][0]["loaded"] is True
        assert body["flag_count"] == len(flags()["flags"])


async def test_readyz_is_503_with_the_health_body_while_a_source_fails(http_agent, tmp_path):
    path = write_json(tmp_path / "flags.json", flags())
    served = await http_agent([path])
    path.write_text("{ this is not json")
    await served.running.service.reloader.reload("test")
    async with await RawHttp.tcp(served.port) as client:
        ready = await client.request("GET", "/readyz")
        assert ready.status == 503
        body = ready.json()
        assert body["status"] == "degraded" and body["last_error"]["source"] == str(path)
        assert (await client.request("GET", "/healthz")).status == 200  # still serving the last good flags
        write_json(path, flags())
        await served.running.service.reloader.reload("test")
        assert (await client.request("GET", "/readyz")).status == 200


async def test_readyz_is_503_when_a_source_never_loaded(http_agent, tmp_path):
    served = await http_agent([tmp_path / "missing.json"])
    async with await RawHttp.tcp(served.port) as client:
        ready = await client.request("GET", "/readyz")
        assert ready.status == 503 and ready.json()["sources"][0]["loaded"] is False
