"""Real agents (``flagsock serve --flags etcd://...`` processes) sharing one etcd: a write through
one is served by the other at the same revision, concurrent writers through both, kill -9 of the
etcd leader in a stream of writes, and an agent started while its store is down."""

from __future__ import annotations

import json

import trio

from tests.helpers import LineClient
from tests.process import AgentProcess

PREFIX = "/flagsock/fleet"
ON = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
OFF = {**ON, "defaultVariant": "off"}


def agent_args(endpoints, sock_dir, name: str) -> list[str]:
    return ["--flags", f"etcd://{','.join(endpoints)}{PREFIX}", "--socket", str(sock_dir / f"{name}.sock")]


async def wait_revision(client: LineClient, revision: int, timeout: float = 10.0) -> None:
    """Wait for a ``changed`` event at ``revision`` or later on a subscribed connection."""
    with trio.fail_after(timeout):
        while True:
            event = await client.receive(timeout)
            if event.get("event") == "changed" and event["revision"] >= revision:
                return


async def value(client: LineClient, flag: str):
    return (await client.result({"op": "evaluate", "flag": flag}))


async def test_a_write_through_one_agent_is_served_by_the_other_at_the_same_revision(etcd, sock_dir):
    etcd.put(f"{PREFIX}/dark_mode", json.dumps(ON))
    with AgentProcess(agent_args(etcd.endpoints, sock_dir, "a")) as a, \
            AgentProcess(agent_args(etcd.endpoints, sock_dir, "b")) as b:
        async with await LineClient.connect(a.socket_path) as ca, await LineClient.connect(b.socket_path) as cb, \
                await LineClient.connect(b.socket_path) as watch_b:
            await watch_b.result({"op": "subscribe"})
            with trio.fail_after(10):
                while "dark_mode" not in (await cb.result({"op": "evaluate_all"}))["flags"]:
                    await watch_b.receive()
            revision = (await ca.result({"op": "set", "flag": "dark_mode", "definition": OFF}))["revision"]
            assert (await ca.result({"op": "ping"}))["revision"] == revision
            await wait_revision(watch_b, revision)
            answer = await value(cb, "dark_mode")
            assert answer["value"] is False and answer["revision"] == revision


async def test_concurrent_writers_through_two_agents_all_land_everywhere(etcd, sock_dir):
    with AgentProcess(agent_args(etcd.endpoints, sock_dir, "a")) as a, \
            AgentProcess(agent_args(etcd.endpoints, sock_dir, "b")) as b:
        acked: dict[str, int] = {}

        async def writer(path: str, name: str) -> None:
            async with await LineClient.connect(path) as client:
                for i in range(10):
                    flag = f"{name}_{i}"
                    acked[flag] = (await client.result({"op": "set", "flag": flag, "definition": ON}))["revision"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, a.socket_path, "from_a")
            nursery.start_soon(writer, b.socket_path, "from_b")
        newest = max(acked.values())
        for path in (a.socket_path, b.socket_path):
            async with await LineClient.connect(path) as client:
                with trio.fail_after(10):
                    while (await client.result({"op": "ping"}))["revision"] < newest:
                        await trio.sleep(0.05)
                flags = (await client.result({"op": "evaluate_all"}))["flags"]
                assert set(acked) <= set(flags)
                assert (await client.result({"op": "ping"}))["revision"] == newest


async def test_every_acknowledged_write_survives_kill_9_of_the_etcd_leader(etcd_cluster, sock_dir):
    with AgentProcess(agent_args(etcd_cluster.endpoints, sock_dir, "a")) as a, \
            AgentProcess(agent_args(etcd_cluster.endpoints, sock_dir, "b")) as b:
        acked: list[str] = []
        refused: list[str] = []
        async with await LineClient.connect(a.socket_path) as client:
            for i in range(60):
                if i == 20:
                    etcd_cluster.leader().kill()
                flag = f"f{i}"
                answer = await client.request({"op": "set", "flag": flag, "definition": ON}, timeout=15)
                (acked if answer.get("ok") else refused).append(flag)
        assert len(acked) >= 40, (acked, refused)
        for path in (a.socket_path, b.socket_path):
            async with await LineClient.connect(path) as client:
                with trio.fail_after(15):
                    while not set(acked) <= set((await client.result({"op": "evaluate_all"}))["flags"]):
                        await trio.sleep(0.1)


async def test_an_agent_started_while_etcd_is_down_serves_at_once_and_catches_up(etcd, sock_dir):
    written = etcd.put(f"{PREFIX}/dark_mode", json.dumps(ON))
    etcd.members[0].stop()
    with AgentProcess(agent_args(etcd.endpoints, sock_dir, "a")) as a:
        async with await LineClient.connect(a.socket_path) as client:
            health = await client.result({"op": "health"})
            assert health["status"] == "degraded" and health["flag_count"] == 0
            write = await client.request({"op": "set", "flag": "x", "definition": ON}, timeout=15)
            assert write["error"]["code"] == "UNAVAILABLE", write
            await trio.to_thread.run_sync(etcd.members[0].start)
            with trio.fail_after(15):
                while (await client.result({"op": "ping"}))["revision"] < written:
                    await trio.sleep(0.05)
            health = await client.result({"op": "health"})
            assert health["status"] == "ok" and health["flag_count"] == 1


async def test_a_restart_while_etcd_is_down_serves_the_copy_in_the_state_dir(etcd, sock_dir, tmp_path):
    written = etcd.put(f"{PREFIX}/dark_mode", json.dumps(ON))
    args = [*agent_args(etcd.endpoints, sock_dir, "a"), "--state-dir", str(tmp_path)]
    with AgentProcess(args) as a:
        async with await LineClient.connect(a.socket_path) as client:
            with trio.fail_after(10):
                while (await client.result({"op": "ping"}))["revision"] < written:
                    await trio.sleep(0.05)
    etcd.members[0].stop()
    with AgentProcess(args) as a:
        async with await LineClient.connect(a.socket_path) as client:
            health = await client.result({"op": "health"})
            assert health["status"] == "degraded" and health["revision"] == written
            [source] = health["sources"]
            assert source["kind"] == "etcd" and source["stale"] is True and source["fetched_at"]
            assert source["flag_count"] == 1
            assert (await client.result({"op": "evaluate", "flag": "dark_mode"}))["value"] is True


def test_serve_refuses_a_bad_etcd_source_or_half_its_credentials(sock_dir, tmp_path):
    from tests.process import flagsock

    sock = str(sock_dir / "x.sock")
    for args, words in [
        (["--flags", "etcd://127.0.0.1/flags"], "not HOST:PORT"),
        (["--flags", "etcd://127.0.0.1:2379"], "no key prefix"),
        (["--flags", "etcd://127.0.0.1:2379/p", "--etcd-user", "root"], "--etcd-password-file go together"),
        (["--flags", "etcd://127.0.0.1:2379/p", "--etcd-user", "root", "--etcd-password-file",
          str(tmp_path / "missing")], "missing"),
    ]:
        done = flagsock("serve", *args, "--socket", sock)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)
