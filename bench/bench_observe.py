"""Issue 16's speed targets: what watching the flags costs.

    .venv/bin/python bench/bench_observe.py [--before DIR] [--seconds S] [--repeat N] [--only PART]

* ``load``: ``evaluate`` through the socket (static and targeted flags, 16 connections), this
  checkout (usage counted per flag, variant and reason; request latency timed for the
  histogram) against the agent before issue 16 (``--before DIR``, a tree of that commit; by
  default ``git archive`` of ``--before-commit``: main as last merged, without this work). Runs alternate, each side keeps its
  best of ``--repeat``; the figures are throughput, p99 and server CPU per answer, the steadiest
  on a shared machine. Target: within 3%.
* ``scrape``: ``render_metrics`` (what ``GET /metrics`` serves) for an agent with 10,000 flags
  each evaluated with two variants (20,000 per-flag samples). Target: under 50 ms.
* ``explain``: ``explain`` of the benchmark's targeted flag (``bench-targeted-flagd``: an allow
  list, then a fractional rollout), after its first explain compiled the traced rule. Target:
  under 1 ms. The first explain (which compiles) is printed too.
* ``dispatch``: the NDJSON dispatch alone (``bench/dispatch_cost.py``: decode, op, evaluate,
  encode, in-process, CPU time), before and after, alternating: the steadiest comparison here.
* ``micro``: the request path's additions alone: the usage increment and the latency
  observation, in nanoseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import bench_server as bs  # noqa: E402
import gen_flags  # noqa: E402

BEFORE_COMMIT = "729de46"  # main as this branch last merged it, without issue 16


def part_load(args: argparse.Namespace, work: str) -> list[str]:
    before = before_tree(args, work)
    flags = os.path.join(work, "flags.json")
    Path(flags).write_text(json.dumps(gen_flags.generate(1000, "simple")))
    flagd = os.path.join(work, "flagd.json")
    Path(flagd).write_text(json.dumps(gen_flags.generate(1000, "flagd")))
    pinning = bs.Pinning(True)
    load = bs.Load(bs.build_loadgen(work), work, pinning)
    servers = []
    for name, tree in (("before", Path(before).resolve()), ("after", ROOT)):
        sock = os.path.join(work, f"{name}.sock")
        cmd = ["env", f"PYTHONPATH={tree}", bs.PYTHON, "-m", "agent", "serve", "--socket", sock,
               "--log-level", "warning", "--flags", flags, "--flags", flagd]
        server = bs.Server(name, cmd, sock, work, "bench-static")
        server.cwd = tree
        servers.append(server.start(pinning))
    out = [f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {pinning.describe()}"]
    try:
        for flag in ("bench-static", "bench-targeted", "bench-targeted-flagd"):
            lines = bs.evaluate_lines(flag)
            a, b = bs.best_of(load, servers, lines, args.repeat, seconds=args.seconds, warmup=0.5)
            out.append(f"{flag:<22} before {a['rps']:>8,.0f}/s p99 {a['p99_us']:>7.0f} us {a['cpu_us']:5.1f} us CPU/answer"
                       f" | after {b['rps']:>8,.0f}/s p99 {b['p99_us']:>7.0f} us {b['cpu_us']:5.1f} us CPU/answer"
                       f" | throughput {b['rps'] / a['rps']:.3f}x, p99 {b['p99_us'] / a['p99_us']:.3f}x,"
                       f" CPU/answer {b['cpu_us'] / a['cpu_us']:.3f}x; errors {a['errors']}/{b['errors']}")
            print(out[-1], flush=True)
    finally:
        for server in servers:
            server.stop()
    return out


def before_tree(args: argparse.Namespace, work: str) -> str:
    if args.before is not None:
        return str(Path(args.before).resolve())
    before = os.path.join(work, "before")
    if not os.path.isdir(before):
        os.makedirs(before)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before_commit], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
    return before


def part_dispatch(args: argparse.Namespace, work: str) -> list[str]:
    """bench/dispatch_cost.py for each tree, alternating: CPU per request of the dispatch alone."""
    before = before_tree(args, work)
    out = []
    for flag, fmt in (("bench-static", "simple"), ("bench-targeted", "simple"), ("bench-targeted-flagd", "flagd")):
        path = os.path.join(work, f"dispatch-{fmt}.json")
        Path(path).write_text(json.dumps(gen_flags.generate(1000, fmt)))
        best = {"before": float("inf"), "after": float("inf")}
        for _ in range(3):
            for name, tree in (("before", before), ("after", str(ROOT))):
                run = subprocess.run([bs.PYTHON, str(HERE / "dispatch_cost.py"), path, flag],
                                     env={**os.environ, "PYTHONPATH": tree}, cwd=tree, capture_output=True, text=True,
                                     check=True)
                best[name] = min(best[name], float(run.stdout))
        out.append(f"dispatch {flag:<22} before {best['before']:.2f} us, after {best['after']:.2f} us CPU per request: "
                   f"{best['after'] / best['before']:.3f}x")
        print(out[-1], flush=True)
    return out


def service_with_flags(count: int) -> SimpleNamespace:
    from agent.engine.formats.document import parse_flag_document
    from agent.frontends.stats import Stats
    from agent.sources.base import SourceOutcome, content_hash, source_state
    from agent.store.loading import build
    from agent.store.store import Store

    data = json.dumps(gen_flags.generate(count, "flagd")).encode()
    parsed = parse_flag_document(data, "bench.json")
    store = Store(["bench.json"])
    state = source_state("bench.json", content_hash(data), parsed)
    store.install(build([SourceOutcome(state, None)], store.snapshot.flags, 0))
    store.record_success("bench.json")
    stats = Stats()
    for key in store.snapshot.flags:
        stats.usage[(key, "on", "TARGETING_MATCH")] += 700
        stats.usage[(key, "off", "TARGETING_MATCH")] += 300
    for op in ("evaluate", "evaluate_all", "stats"):
        for i in range(1000):
            stats.observe(op, i * 1e-6)
    return SimpleNamespace(stats=stats, store=store, version="bench")


def part_scrape(args: argparse.Namespace) -> list[str]:
    from agent.frontends.metrics import render_metrics

    service = service_with_flags(10_000)
    render_metrics(service)  # the first imports prometheus_client
    times, cpu = [], []
    for _ in range(args.scrapes):
        t0, c0 = time.perf_counter(), time.process_time()
        body = render_metrics(service)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    median, worst = statistics.median(times), max(times)
    line = (f"scrape of 10,000 flags ({len(service.stats.usage):,} evaluation samples, {len(body) / 1e6:.1f} MB): "
            f"median {median:.1f} ms (CPU {statistics.median(cpu):.1f} ms), max {worst:.1f} ms of {len(times)}; "
            f"target < 50 ms: {'PASS' if median < 50 else 'FAIL'}")
    print(line, flush=True)
    return [line]


def part_explain(args: argparse.Namespace) -> list[str]:
    from agent.engine.evaluate import evaluate
    from agent.engine.explain import explain
    from agent.engine.formats.document import parse_flag_document

    flags = parse_flag_document(json.dumps(gen_flags.generate(1000, "flagd")).encode(), "bench.json").flags
    key = "bench-targeted-flagd"
    contexts = [{"targetingKey": f"user-{i}"} for i in range(1000)]
    t0 = time.perf_counter()
    explain(flags, key, contexts[0])
    first = (time.perf_counter() - t0) * 1000
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for context in contexts:
            explain(flags, key, context)
        rounds.append((time.perf_counter() - t0) / len(contexts) * 1e6)
    plain = min(timeit.repeat(lambda: [evaluate(flags, key, c) for c in contexts], number=1, repeat=5)) / len(contexts) * 1e6
    line = (f"explain {key}: {min(rounds):.1f} us (best of 5 rounds over 1,000 users; median round "
            f"{statistics.median(rounds):.1f} us), first (compiles the traced rule) {first:.2f} ms; plain evaluate "
            f"{plain:.2f} us; target < 1 ms: {'PASS' if statistics.median(rounds) < 1000 else 'FAIL'}")
    print(line, flush=True)
    return [line]


def part_micro(args: argparse.Namespace) -> list[str]:
    from collections import Counter
    from time import perf_counter

    from agent.frontends.stats import Stats

    stats = Stats()
    usage: Counter = Counter()
    key, variant, reason = "bench-targeted-flagd", "on", "TARGETING_MATCH"
    n = 1_000_000
    def nothing() -> None:
        pass

    def increment() -> None:
        usage[(key, variant, reason)] += 1

    by_flag: Counter = Counter()

    def increment_before() -> None:  # what the request path counted before: evaluations per flag
        by_flag[key] += 1

    def timed() -> None:
        started = perf_counter()
        stats.observe("evaluate", perf_counter() - started)

    # CPU time, less a bare call's: what the additions cost, not the harness or the neighbours.
    def cost(fn) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5, timer=time.process_time)) / n * 1e9

    base = cost(nothing)
    incr, before, observe = cost(increment) - base, cost(increment_before) - base, cost(timed) - base
    line = (f"request path additions (CPU, a bare call's {base:.0f} ns taken off): usage increment {incr:.0f} ns "
            f"(the per-flag increment it replaces: {before:.0f} ns), perf_counter pair + histogram observe "
            f"{observe:.0f} ns; added per evaluate {incr - before + observe:.0f} ns")
    print(line, flush=True)
    return [line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="DIR", help="a tree of the agent before issue 16")
    parser.add_argument("--before-commit", default=BEFORE_COMMIT, help="the commit to archive when --before is not given")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load run")
    parser.add_argument("--repeat", type=int, default=3, help="load runs per side, best kept")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--only", action="append", choices=["load", "dispatch", "scrape", "explain", "micro"])
    args = parser.parse_args()
    parts = args.only or ["micro", "dispatch", "explain", "scrape", "load"]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fsk-bo-", dir="/tmp") as work:
        for part in parts:
            if part == "load":
                part_load(args, work)
            elif part == "dispatch":
                part_dispatch(args, work)
            elif part == "scrape":
                part_scrape(args)
            elif part == "explain":
                part_explain(args)
            else:
                part_micro(args)


if __name__ == "__main__":
    main()
