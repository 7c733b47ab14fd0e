"""The HTTP frontend against the NDJSON one, in the same run, on the same agent.

    .venv/bin/python bench/bench_http.py [--seconds S] [--repeat N] [--flags N]

One agent serves NDJSON on a Unix socket and HTTP on a Unix socket and on 127.0.0.1 (``--http``).
The C load generator (bench/loadgen.c, ``-H`` for HTTP) drives 16 keep-alive connections, one
request in flight each, alternating NDJSON ``evaluate`` and OFREP ``POST
/ofrep/v1/evaluate/flags/{key}`` runs; each side keeps its best of ``--repeat``. Then the bulk
``POST /ofrep/v1/evaluate/flags`` over ``--flags`` flags, answered 200 (no ``If-None-Match``)
and 304 (the ETag the agent gave that context), compared by throughput and CPU per answer.

Targets (issue 14): OFREP single-flag throughput >= 0.6x NDJSON evaluate, p99 <= 2x; a bulk
answer 304 cheaper than a 200. Exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen_flags  # noqa: E402
from bench_server import PYTHON, Load, Pinning, Server, build_loadgen, evaluate_lines, ms  # noqa: E402

SINGLE = "/ofrep/v1/evaluate/flags/"
BULK = "/ofrep/v1/evaluate/flags"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_post(unix_path: str, target: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """One request over the HTTP Unix socket (for the ETags the 304 run sends)."""
    head = [f"POST {target} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(unix_path)
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), fields, rest


def ofrep_lines(flag: str, users: int = 1000) -> list[bytes]:
    return [f"{SINGLE}{flag}\t{json.dumps({'context': {'targetingKey': f'user-{i}'}}, separators=(',', ':'))}".encode()
            for i in range(users)]


def bulk_lines(unix_path: str, users: int, *, conditional: bool) -> list[bytes]:
    lines = []
    for i in range(users):
        body = json.dumps({"context": {"targetingKey": f"user-{i}"}}, separators=(",", ":"))
        line = f"{BULK}\t{body}"
        if conditional:
            status, fields, _ = http_post(unix_path, BULK, body.encode())
            assert status == 200, status
            line += f"\tIf-None-Match: {fields['etag']}"
        lines.append(line.encode())
    return lines


class HttpTarget:
    """What Load.run needs of a server, pointed at the agent's HTTP socket (same process)."""

    def __init__(self, agent: Server, sock_path: str, name: str) -> None:
        self.agent, self.sock_path, self.name = agent, sock_path, name

    def cpu_seconds(self) -> float:
        return self.agent.cpu_seconds()


class HttpLoad(Load):
    """The load generator in HTTP mode (-H), over the Unix socket or TCP (-t PORT)."""

    def __init__(self, *args: Any, port: int | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.port = port

    def start(self, server: Any, lines: list[bytes], *, conns: int = 16, depth: int = 1,
              seconds: float = 3.0, warmup: float = 0.5, **_: Any):
        import subprocess
        cmd = [self.loadgen, "-H", "-f", self.request_file(lines), "-c", str(conns), "-d", str(depth),
               "-D", str(seconds), "-W", str(warmup)]
        cmd += ["-t", str(self.port)] if self.port else ["-s", server.sock_path]
        return subprocess.Popen(self.pinning.loadgen(cmd), stdout=subprocess.PIPE)


def row(label: str, a: str, b: str = "", ratio: float | None = None) -> None:
    r = f"{ratio:6.2f}x" if ratio is not None else ""
    print(f"  {label:<34} {a:>18} {b:>18} {r:>8}")


def block(title: str, left: str, right: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    print(f"\n{title}")
    row("", left, right)
    row("throughput (answers/s)", f"{a['rps']:,.0f}", f"{b['rps']:,.0f}", a["rps"] / b["rps"])
    for key, label in (("p50_us", "p50"), ("p99_us", "p99"), ("max_us", "max")):
        row(f"latency {label}", ms(a[key]), ms(b[key]), a[key] / b[key] if b[key] else None)
    row("server CPU per answer", f"{a['cpu_us']:.1f} us", f"{b['cpu_us']:.1f} us", a["cpu_us"] / b["cpu_us"])
    row("errors", str(a["errors"]), str(b["errors"]))
    row("CPU: server / load generator", f"{a['server_cpu']:.0%} / {a['loadgen_cpu']:.0%}",
        f"{b['server_cpu']:.0%} / {b['loadgen_cpu']:.0%}")


def best(load: Load, runs: list[tuple[Load, Any, list[bytes]]], repeat: int, **kw: Any) -> list[dict[str, Any]]:
    """Alternate the runs; keep each one's best throughput."""
    out: list[dict[str, Any] | None] = [None] * len(runs)
    for _ in range(repeat):
        for i, (gen, target, lines) in enumerate(runs):
            r = gen.run(target, lines, **kw)
            if out[i] is None or r["rps"] > out[i]["rps"]:
                out[i] = r
    return out  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--flags", type=int, default=100, help="flags in the bulk answer (default 100)")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()

    pinning = Pinning(not args.no_pin)
    workdir = tempfile.mkdtemp(prefix="flagsock-bench-http-")
    agent = None
    try:
        flags = os.path.join(workdir, "flags.json")
        gen_flags.write(flags, args.flags, "flagd")
        ndjson_sock = os.path.join(workdir, "agent.sock")
        http_sock = os.path.join(workdir, "http.sock")
        port = free_port()
        cmd = [PYTHON, "-m", "agent", "serve", "--socket", ndjson_sock, "--log-level", "warning", "--flags", flags,
               "--http", f"unix:{http_sock}", "--http", f"127.0.0.1:{port}"]
        agent = Server("agent", cmd, ndjson_sock, workdir, "bench-static-flagd").start(pinning)
        loadgen = build_loadgen(workdir)
        # Each generator its own directory: Load names its request files by count, not content.
        dirs = [os.path.join(workdir, name) for name in ("ndjson", "http-unix", "http-tcp")]
        for path in dirs:
            os.mkdir(path)
        ndjson = Load(loadgen, dirs[0], pinning)
        http_unix = HttpLoad(loadgen, dirs[1], pinning)
        http_tcp = HttpLoad(loadgen, dirs[2], pinning, port=port)
        target = HttpTarget(agent, http_sock, "agent (HTTP)")

        print(f"flagsock HTTP bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
              f"load average {os.getloadavg()[0]:.2f}; {pinning.describe()}")
        print(f"{args.seconds:g} s measured per run, best of {args.repeat} alternating runs; 16 keep-alive "
              f"connections, one request in flight each; {args.flags} flags (flagd format)")

        results: dict[str, Any] = {}
        for flag in ("bench-static-flagd", "bench-targeted-flagd"):
            nd, hu, ht = best(ndjson, [(ndjson, agent, evaluate_lines(flag)), (http_unix, target, ofrep_lines(flag)),
                                       (http_tcp, target, ofrep_lines(flag))], args.repeat, seconds=args.seconds)
            block(f"single flag {flag}: OFREP over the HTTP Unix socket vs NDJSON evaluate", "OFREP (unix)",
                  "NDJSON", hu, nd)
            block(f"single flag {flag}: OFREP over 127.0.0.1 vs NDJSON evaluate", "OFREP (tcp)", "NDJSON", ht, nd)
            results[flag] = (hu, ht, nd)

        full = bulk_lines(http_sock, 100, conditional=False)
        cond = bulk_lines(http_sock, 100, conditional=True)
        b200, b304 = best(http_unix, [(http_unix, target, full), (http_unix, target, cond)], args.repeat,
                          seconds=args.seconds, conns=4)
        block(f"bulk evaluation of {args.flags} flags, 4 connections: 304 (If-None-Match) vs 200", "304", "200",
              b304, b200)

        checks = []
        for flag, (hu, ht, nd) in results.items():
            checks.append((f"OFREP {flag} throughput >= 0.6x NDJSON (unix)", hu["rps"] / nd["rps"] >= 0.6,
                           f"{hu['rps'] / nd['rps']:.2f}x ({hu['rps']:,.0f} vs {nd['rps']:,.0f}/s)"))
            checks.append((f"OFREP {flag} p99 <= 2x NDJSON (unix)", hu["p99_us"] <= 2 * nd["p99_us"],
                           f"{hu['p99_us'] / nd['p99_us']:.2f}x ({ms(hu['p99_us'])} vs {ms(nd['p99_us'])})"))
        checks.append(("bulk 304 cheaper than 200 (server CPU per answer)", b304["cpu_us"] < b200["cpu_us"],
                       f"{b304['cpu_us']:.0f} us vs {b200['cpu_us']:.0f} us ({b304['rps']:,.0f} vs {b200['rps']:,.0f}/s)"))
        failed = sum(r["errors"] for rs in results.values() for r in rs) + b200["errors"] + b304["errors"]
        checks.append(("no failed answers", failed == 0, f"{failed} failed"))
        print("\nTargets (issue 14)")
        for name, ok, figure in checks:
            print(f"  {'PASS' if ok else 'FAIL'}  {name:<52} {figure}")
        met = sum(ok for _, ok, _ in checks)
        print(f"  {met} of {len(checks)} targets met")
        return 0 if met == len(checks) else 1
    finally:
        if agent is not None:
            agent.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
