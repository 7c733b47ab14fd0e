"""How long after a change does a subscriber hear of it? (issue 5: within 100 ms)

Starts a real agent, keeps one subscriber connection, and makes N changes two ways:

* a file edit (write a temporary file, rename it over the flag file) — the watcher's path;
* a ``set`` over the socket — the write path.

For each it measures the time from the change (the rename returning, or the ``set`` being sent)
to the ``changed`` event arriving, and prints p50 / p99 / max. Run by hand:
``python bench/bench_events.py [--changes 100] [--flags 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def document(n_flags: int, version: int) -> dict:
    flags = {f"flag{i}": {"enabled": (i + version) % 2 == 0, "rollout_percentage": 50,
                          "allowed_users": [f"u{i}"]} for i in range(n_flags)}
    return {"flags": flags}


class Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def connect(path: str) -> socket.socket:
    deadline = time.monotonic() + 15
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def wait_changed(sub: Lines) -> float:
    while True:
        msg = sub.next()
        if msg.get("event") == "changed":
            return time.perf_counter()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(name: str, latencies: list[float], bound_ms: float) -> bool:
    ms = [v * 1000 for v in latencies]
    worst = max(ms)
    ok = worst <= bound_ms
    print(f"{name:<22} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms"
          f"   max {worst:7.1f} ms   {'PASS' if ok else 'FAIL'} (max <= {bound_ms:.0f} ms)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--flags", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fsk-ev-", dir="/tmp"))
    flags = work / "flags.json"
    flags.write_text(json.dumps(document(args.flags, 0), indent=2))
    sock = str(work / "a.sock")
    agent = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--flags", str(flags), "--socket", sock,
                              "--log-level", "warning"], cwd=ROOT)
    try:
        sub_sock = connect(sock)
        sub = Lines(sub_sock)
        sub_sock.sendall(b"subscribe\n")
        assert sub.next()["ok"]
        file_lat = []
        for version in range(1, args.changes + 1):
            tmp = work / ".flags.json.tmp"
            tmp.write_text(json.dumps(document(args.flags, version), indent=2))
            os.replace(tmp, flags)
            t0 = time.perf_counter()
            file_lat.append(wait_changed(sub) - t0)
        writer = connect(sock)
        replies = Lines(writer)
        set_lat = []
        for i in range(args.changes):
            t0 = time.perf_counter()
            # Every set must change something, or there is no event to wait for.
            change = {"op": "set", "flag": "flag0", "enabled": True, "rollout_percentage": i % 99 + 1}
            writer.sendall(json.dumps(change).encode() + b"\n")
            set_lat.append(wait_changed(sub) - t0)
            assert replies.next()["ok"]
        print(f"push latency, {args.flags}-flag file, {args.changes} changes each:")
        ok = report("file edit -> event", file_lat, 100) & report("set -> event", set_lat, 100)
        return 0 if ok else 1
    finally:
        agent.terminate()
        agent.wait(10)


if __name__ == "__main__":
    sys.exit(main())
