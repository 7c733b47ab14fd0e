"""``make soak``: minutes of load with reloads and writes; nothing fails, nothing grows, nothing leaks.

    .venv/bin/python bench/soak.py [--minutes 10] [--every 3] [--connections 16]

Starts the agent on two flag files, a 1,000-flag flagd file that the soak rewrites (the
"reload" file) and a small simple file that ``set`` changes (``--write-to``), then for
``--minutes`` keeps 16 clients asking at full speed (bench/loadgen.c: evaluate of static and
targeted flags, ``ping``, now and then ``evaluate_all``) while every ``--every`` seconds it does
one of, in turn:

* replaces the reload file (write a temporary file, rename it over) with a new marker variant;
* rewrites it in place (truncate and write, as ``sed -i``-less editors do);
* ``set``s the written flag through the socket (on/off and a new rollout), expecting ``ok``.

After each rewrite it checks that the new marker is served within 5 s. It samples the agent's
RSS every few seconds and counts its open file descriptors (/proc/PID/fd) before the load
starts and after the clients have gone. The summary says PASS when: no answer failed (load,
writes and reload checks), RSS grew at most 10% after the warm-up, and the open descriptors at
the end are no more than at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_server as bench
import gen_flags

WRITTEN_FLAG = "soak-written"


class Client:
    """One blocking connection for the soak's own requests (writes, marker checks)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""

    def ask(self, request: dict) -> dict:
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the agent closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


def request_lines() -> list[bytes]:
    lines: list[bytes] = []
    for i in range(200):
        user = {"targetingKey": f"user-{i}"}
        for flag in ("bench-static", "bench-targeted", "bench-targeted-flagd", "bench-marker", WRITTEN_FLAG):
            lines.append(json.dumps({"op": "evaluate", "id": len(lines), "flag": flag, "context": user}).encode())
        lines.append(b'{"op":"ping"}')
        if i % 25 == 0:
            lines.append(json.dumps({"op": "evaluate_all", "context": user}).encode())
    return lines


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description="Soak the agent with load, reloads and writes (issue 8 §5).")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between reloads/writes (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--flags", type=int, default=1000, help="flags in the reload file (default 1000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--agent-tree", metavar="DIR", help="import the agent from DIR (see bench_server.py)")
    args = parser.parse_args()
    if args.agent_tree:
        bench.AGENT_TREE = Path(args.agent_tree).resolve()
    seconds = args.minutes * 60
    warmup = min(60.0, seconds / 4)

    workdir = tempfile.mkdtemp(prefix="flagsock-soak-")
    pinning = bench.Pinning(False)  # a soak is about leaks, not speed: let the kernel place things
    reload_file = os.path.join(workdir, "reload", "flags.flagd.json")
    write_file = os.path.join(workdir, "written", "flags.json")
    os.makedirs(os.path.dirname(reload_file))
    os.makedirs(os.path.dirname(write_file))
    gen_flags.write(reload_file, args.flags, "flagd", "m0")
    simple = gen_flags.generate(50, "simple")
    simple["flags"][WRITTEN_FLAG] = {"enabled": True, "rollout_percentage": 50}
    Path(write_file).write_text(json.dumps(simple))

    agent = bench.agent(workdir, "agent", [reload_file, write_file], "bench-static")
    agent.cmd += ["--write-to", write_file]
    failures: list[str] = []
    counts = {"replace": 0, "in_place": 0, "set": 0}
    rss: list[tuple[float, int]] = []
    try:
        loadgen = bench.build_loadgen(workdir)
        load = bench.Load(loadgen, workdir, pinning)
        agent.start(pinning)
        # The watcher starts once the agent answers (it imports watchfiles in a worker thread
        # first): count the agent's fds when it is fully up, as at the end.
        time.sleep(1.0)
        fds_start = fd_count(agent.pid)
        print(f"soak: {args.minutes:g} min, {args.connections} connections, a reload or write every "
              f"{args.every:g} s; agent pid {agent.pid}, {fds_start} open fds; warm-up {warmup:.0f} s")
        gen = load.start(agent, request_lines(), conns=args.connections, seconds=seconds, warmup=0.0)
        client = Client(agent.sock_path)
        t0 = time.monotonic()
        step = 0
        next_action = t0 + args.every
        next_sample = t0
        next_print = t0 + 30
        while gen.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                rss.append((now - t0, agent.status_kb("VmRSS")))
                next_sample += 2.0
            if now >= next_print:
                print(f"  {now - t0:5.0f} s  RSS {rss[-1][1] / 1024:6.1f} MB  fds {fd_count(agent.pid):4d}  "
                      f"replaced {counts['replace']}  rewritten {counts['in_place']}  sets {counts['set']}  "
                      f"failures {len(failures)}", flush=True)
                next_print += 30
            if now >= next_action and now - t0 < seconds - 2:
                next_action += args.every
                kind = ("replace", "in_place", "set")[step % 3]
                step += 1
                try:
                    act(client, kind, step, reload_file, args.flags, failures)
                    counts[kind] += 1
                except (OSError, ConnectionError, ValueError) as exc:
                    failures.append(f"{kind} #{step}: {exc}")
                    client.close()
                    client = Client(agent.sock_path)
            time.sleep(0.05)
        out, _ = gen.communicate()
        result = json.loads(out)
        client.close()
        time.sleep(1.0)  # let the agent finish closing the clients' connections
        fds_end = fd_count(agent.pid)
        health = Client(agent.sock_path)
        stats = health.ask({"op": "stats"})["result"]
        status = health.ask({"op": "health"})["result"]["status"]
        health.close()
    except RuntimeError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    finally:
        agent.stop()
        if args.keep:
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    after = [kb for t, kb in rss if t >= warmup]
    base = after[0] if after else rss[-1][1]
    growth = (max(after) - base) / base if after else 0.0
    final_growth = (after[-1] - base) / base if after else 0.0
    load_failed = result["errors"] + result["conn_errors"]
    print("\nsoak summary")
    print(f"  answers under load        {result['answers']:,} ({result['rps']:,.0f}/s), failed {result['errors']}, "
          f"connections lost {result['conn_errors']}; p50 {bench.ms(result['p50_us'])}, "
          f"p99 {bench.ms(result['p99_us'])}, max {bench.ms(result['max_us'])}")
    print(f"  reloads and writes        {counts['replace']} replaced, {counts['in_place']} rewritten in place, "
          f"{counts['set']} sets; agent counted reloads ok {stats['reloads']['ok']}, failed {stats['reloads']['failed']}")
    print(f"  failures of those         {len(failures)}" + "".join(f"\n    {f}" for f in failures[:10]))
    print(f"  RSS                       {rss[0][1] / 1024:.1f} MB at start, {base / 1024:.1f} MB after warm-up, "
          f"max {max(after or [base]) / 1024:.1f} MB, end {rss[-1][1] / 1024:.1f} MB: "
          f"growth {growth:+.1%} (max), {final_growth:+.1%} (end)")
    print(f"  open fds                  {fds_start} before the load, {fds_end} after it")
    print(f"  health at the end         {status}")
    checks = [
        ("no failed answers", load_failed == 0 and not failures),
        ("RSS growth after warm-up <= 10%", growth <= 0.10),
        ("no file descriptor leak", fds_end <= fds_start),
        ("health ok at the end", status == "ok"),
    ]
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(ok for _, ok in checks) else 1


def act(client: Client, kind: str, step: int, reload_file: str, count: int, failures: list[str]) -> None:
    """One reload or write, checked: the new content must be served within 5 s."""
    if kind == "set":
        enabled = step % 2 == 0
        answer = client.ask({"op": "set", "flag": WRITTEN_FLAG, "enabled": enabled,
                             "rollout_percentage": 10 + step % 80})
        if not answer.get("ok"):
            failures.append(f"set #{step}: {answer.get('error')}")
        return
    marker = f"m{step}"
    gen_flags.replace_file(reload_file, gen_flags.encode(count, "flagd", marker), atomic=kind == "replace")
    deadline = time.monotonic() + 5.0
    while True:
        answer = client.ask({"op": "evaluate", "flag": "bench-marker"})
        if not answer.get("ok"):
            failures.append(f"{kind} #{step}: evaluate answered {answer.get('error')}")
            return
        if answer["result"]["variant"] == marker:
            return
        if time.monotonic() > deadline:
            failures.append(f"{kind} #{step}: {marker} not served 5 s after the write "
                            f"(still {answer['result']['variant']})")
            return
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
