"""The test tools themselves: the etcd we start is 3.5 with a working v3 JSON gateway, the cluster
survives a killed member, and the fault proxy does each of its faults."""

from __future__ import annotations

import base64
import functools
import urllib.error

import pytest
import trio

from tests.fleet.etcd import b64, etcd_version, post_json


def test_etcd_binary_is_3_5(etcd_binary):
    assert etcd_version(etcd_binary).startswith("3.5."), etcd_version(etcd_binary)


def test_v3_json_gateway_puts_and_ranges(etcd):
    revision = etcd.put("/t/a", "one")
    got = etcd.call("/v3/kv/range", {"key": b64("/t/a")})
    assert int(got["header"]["revision"]) == revision
    [kv] = got["kvs"]
    assert base64.b64decode(kv["value"]) == b"one"
    assert int(kv["mod_revision"]) == revision


def test_compact_makes_old_revisions_unreadable(etcd):
    first = etcd.put("/t/a", "one")
    etcd.put("/t/a", "two")
    etcd.compact()
    with pytest.raises(urllib.error.HTTPError):
        etcd.call("/v3/kv/range", {"key": b64("/t/a"), "revision": str(first)})


def test_cluster_keeps_serving_after_a_member_is_killed(etcd_cluster):
    assert len(etcd_cluster.members) == 3
    etcd_cluster.put("/t/a", "one")
    victim = etcd_cluster.leader()
    victim.kill()
    assert not victim.running
    etcd_cluster.wait_healthy()
    survivor = next(m for m in etcd_cluster.members if m.running)
    revision = int(post_json(survivor.client_url + "/v3/kv/put", {"key": b64("/t/a"), "value": b64("two")},
                             timeout=10)["header"]["revision"])
    victim.start()
    got = post_json(victim.client_url + "/v3/kv/range", {"key": b64("/t/a")}, timeout=10)
    assert int(got["header"]["revision"]) >= revision
    assert base64.b64decode(got["kvs"][0]["value"]) == b"two"


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def _roundtrip(port: int, data: bytes = b"ping") -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(data)
        return await stream.receive_some(100)


async def test_fault_proxy_passes_cuts_hangs_and_refuses(nursery, fault_proxy):
    [echo] = await nursery.start(functools.partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
    proxy = await fault_proxy(echo.socket.getsockname()[1])

    assert await _roundtrip(proxy.port) == b"ping"

    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await stream.send_all(b"a")
    assert await stream.receive_some(10) == b"a"
    proxy.cut()
    with trio.fail_after(5):
        assert await stream.receive_some(10) == b""
    await stream.aclose()

    proxy.hang()
    with trio.move_on_after(0.3) as waited:
        await _roundtrip(proxy.port)
    assert waited.cancelled_caught, "a hung proxy forwarded bytes"
    await proxy.pass_through()
    assert await _roundtrip(proxy.port) == b"ping"

    proxy.refuse()
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await proxy.pass_through()
    assert await _roundtrip(proxy.port) == b"ping"
