"""Benchmark the stdlib client against a real agent: per-call cost and threaded throughput.

    .venv/bin/python bench/bench_client.py [--seconds 1.0] [--socket PATH]

Starts ``python -m agent serve`` on a temporary flag file and socket (unless ``--socket`` names
an agent already running), then measures, each for about ``--seconds``:

* microseconds per ``is_enabled`` call, uncached and cached (``cache=True``, a hit), next to a
  bare-socket round trip (the floor any client pays: the agent's own time plus two wake-ups);
* calls per second with 1, 4 and 16 threads sharing one client, uncached, for connection pools
  of 1 (one connection behind a lock), 4 (the default) and 16; and cached.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.client import FlagClient  # noqa: E402

FLAGS = {
    "flags": {
        "dark_mode": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "vip": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["user_123", "user_456"]]}, "on", "off"]},
        },
    }
}


@contextmanager
def running_agent() -> Iterator[str]:
    """A fresh agent on a temporary socket; yields the socket path."""
    with tempfile.TemporaryDirectory(prefix="fsbench-") as tmp:
        flags = Path(tmp, "flags.json")
        flags.write_text(json.dumps(FLAGS))
        sock = os.path.join(tmp, "agent.sock")
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "serve", "--flags", str(flags), "--socket", sock],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            probe = FlagClient(sock, timeout=0.5)
            deadline = time.monotonic() + 15
            while True:
                try:
                    probe.request("ping")
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = proc.stderr.read().decode() if proc.poll() is not None else "(still running)"
                        raise SystemExit(f"the agent did not come up:\n{err}") from None
                    time.sleep(0.02)
            probe.close()
            yield sock
        finally:
            proc.terminate()
            proc.wait(10)


def per_call(call: Callable[[], object], seconds: float) -> str:
    """Mean wall-clock and client-CPU microseconds per call, timed for about ``seconds``.

    The CPU figure is this process's own work (encoding, decoding, locking, syscalls), which
    stays meaningful on a busy machine where the wall clock mostly measures waiting.
    """
    for _ in range(200):
        call()
    n, batch = 0, 200
    cpu_started = time.process_time()
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        for _ in range(batch):
            call()
        n += batch
    wall = (time.perf_counter() - started) / n * 1e6
    cpu = (time.process_time() - cpu_started) / n * 1e6
    return f"{wall:9.2f} us/call  (client CPU {cpu:7.2f} us)"


def throughput(call: Callable[[], object], threads: int, seconds: float) -> float:
    """Calls per second from ``threads`` threads calling for about ``seconds``."""
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        barrier.wait()
        n = 0
        while not stop.is_set():
            for _ in range(100):
                call()
            n += 100
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def checked(client: FlagClient) -> Callable[[], bool]:
    def call() -> bool:
        if not client.is_enabled("vip", user_id="user_123"):
            raise AssertionError(f"wrong answer: {client.evaluate('vip', {'targetingKey': 'user_123'})}")
        return True

    return call


@contextmanager
def raw_round_trip(sock: str) -> Iterator[Callable[[], object]]:
    """The floor: one hand-written evaluate request and its answer on a bare socket."""
    request = b'{"op":"evaluate","id":1,"flag":"vip","context":{"targetingKey":"user_123"},"type":"boolean"}\n'
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(sock)
        with conn.makefile("rb") as reader:

            def call() -> object:
                conn.sendall(request)
                return reader.readline()

            yield call


def bench(sock: str, seconds: float) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with raw_round_trip(sock) as raw:
        rows.append(("baseline: bare socket evaluate round trip, 1 thread", per_call(raw, seconds)))
    with FlagClient(sock, timeout=2.0) as c:
        rows.append(("uncached is_enabled(flag, user_id), 1 thread", per_call(checked(c), seconds)))
        rows.append(("uncached evaluate(flag) no context, 1 thread",
                     per_call(lambda: c.evaluate('dark_mode'), seconds)))
    with FlagClient(sock, timeout=2.0, cache=True) as c:
        deadline = time.monotonic() + 5
        while not c.subscribed:
            if time.monotonic() > deadline:
                raise SystemExit("the cached client did not subscribe: does the agent support `subscribe`?")
            time.sleep(0.01)
        rows.append(("cached is_enabled(flag, user_id), 1 thread", per_call(checked(c), seconds)))
        rows.append(("cached evaluate(flag) no context, 1 thread",
                     per_call(lambda: c.evaluate('dark_mode'), seconds)))
        for threads in (1, 4, 16):
            rate = throughput(checked(c), threads, seconds)
            rows.append((f"cached, {threads:2d} threads, one client", f"{rate:10,.0f} calls/s"))
    for pool_size in (1, 4, 16):
        with FlagClient(sock, timeout=5.0, pool_size=pool_size) as c:
            for threads in (1, 4, 16):
                rate = throughput(checked(c), threads, seconds)
                rows.append((f"uncached, {threads:2d} threads, one client, pool_size={pool_size}", f"{rate:10,.0f} calls/s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1.0)")
    parser.add_argument("--socket", help="measure an agent already running here instead of starting one")
    args = parser.parse_args()
    if args.socket:
        rows = bench(args.socket, args.seconds)
    else:
        with running_agent() as sock:
            rows = bench(sock, args.seconds)
    width = max(len(name) for name, _ in rows)
    print(f"flagsock client, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'measurement':<{width}}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
