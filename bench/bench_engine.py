"""Engine benchmark: flagsock's evaluate() against openfeature-flagd-core, same flags, same contexts.

Run by hand: ``.venv/bin/python bench/bench_engine.py [--contexts N] [--rounds N]``. Prints
microseconds per evaluation for static flags, ``in``/``ends_with``, ``sem_ver`` and
``fractional`` rules, and for evaluating all of 1,000 flags for one context, with the ratio.

The last row is ``evaluate_all`` over the same 1,000 flags through a real agent's socket (a
round trip, JSON both ways), against the reference evaluating them in-process. Targets (issue
3): every in-process case at least 5x faster, the socket round trip at least 4x.

Both sides evaluate in-process with ``v3`` bucketing (the reference's only one). The
reference's contexts are built before timing (``EvaluationContext`` objects), so only its
resolution is measured; flagsock's are the plain dicts the server hands to ``evaluate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openfeature.contrib.tools.flagd.core import FlagdCore  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402

from agent.engine.evaluate import evaluate  # noqa: E402
from agent.engine.formats.document import parse_flag_document  # noqa: E402

VARIANTS = {"red": "red", "green": "green", "blue": "blue", "none": "none"}


def rule_for(kind: str, i: int) -> dict | None:
    if kind == "static":
        return None
    if kind == "in/ends_with":
        return {"if": [{"in": [{"var": "email"}, [f"vip{i}@acme.com", "boss@acme.com", "cto@acme.com"]]}, "red",
                       {"if": [{"ends_with": [{"var": "email"}, "@acme.com"]}, "green", "blue"]}]}
    if kind == "sem_ver":
        return {"if": [{"sem_ver": [{"var": "version"}, ">=", f"2.{i % 5}.0"]}, "green",
                       {"if": [{"sem_ver": [{"var": "version"}, "^", "1.0.0"]}, "blue", "none"]}]}
    return {"fractional": [["red", 25], ["green", 25], ["blue", 50]]}


KINDS = ("static", "in/ends_with", "sem_ver", "fractional")


def flag(kind: str, i: int) -> dict:
    out = {"state": "ENABLED", "variants": VARIANTS, "defaultVariant": "none"}
    rule = rule_for(kind, i)
    if rule is not None:
        out["targeting"] = rule
    return out


def contexts(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    domains = ["acme.com", "example.org", "mail.net"]
    return [
        {"targetingKey": f"user-{rnd.randrange(10**9)}", "email": f"u{i}@{rnd.choice(domains)}",
         "version": f"{rnd.randrange(1, 4)}.{rnd.randrange(0, 8)}.{rnd.randrange(0, 20)}", "plan": "pro"}
        for i in range(n)
    ]


def per_call_us(fn: Callable[[], None], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / calls / 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, default=2000, help="contexts cycled through per case")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case; the best counts")
    args = parser.parse_args()
    logging.getLogger("openfeature").setLevel(logging.CRITICAL)

    doc = {"flags": {f"{kind}-{i}": flag(kind, i) for kind in KINDS for i in range(250)}}
    ours = parse_flag_document(json.dumps(doc).encode(), "bench.json", fractional="v3").flags
    ref = FlagdCore()
    ref.set_flags(json.loads(json.dumps(doc)))
    ctxs = contexts(args.contexts)
    ref_ctxs = [EvaluationContext(targeting_key=c["targetingKey"], attributes={k: v for k, v in c.items() if k != "targetingKey"})
                for c in ctxs]

    for c, rc in zip(ctxs[:200], ref_ctxs[:200]):  # same answers before timing anything
        for key in ours:
            mine, theirs = evaluate(ours, key, c, expected_type="string"), ref.resolve_string_value(key, "x", rc)
            assert (mine.value, mine.variant, mine.reason) == (theirs.value, theirs.variant, theirs.reason), key

    rows = []
    n = len(ctxs)
    for kind in KINDS:
        key = f"{kind}-3"

        def mine(key=key):
            for c in ctxs:
                evaluate(ours, key, c, expected_type="string")

        def theirs(key=key):
            for rc in ref_ctxs:
                ref.resolve_string_value(key, "x", rc)

        rows.append((kind, per_call_us(mine, n, args.rounds), per_call_us(theirs, n, args.rounds)))

    keys = list(ours)
    sample = ctxs[:50]
    ref_sample = ref_ctxs[:50]

    def mine_all():
        for c in sample:
            for key in keys:
                evaluate(ours, key, c)

    def theirs_all():
        for rc in ref_sample:
            for key in keys:
                ref.resolve_string_value(key, "x", rc)

    rows.append(("evaluate-all, 1000 flags", per_call_us(mine_all, len(sample), args.rounds),
                 per_call_us(theirs_all, len(sample), args.rounds)))

    theirs_all_us = rows[-1][2]
    rows.append(("evaluate_all via socket", socket_evaluate_all_us(doc, sample, args.rounds), theirs_all_us))

    print(f"python {sys.version.split()[0]}, {n} contexts, best of {args.rounds} rounds, bucketing v3\n")
    print(f"{'case':<26} {'flagsock µs':>12} {'flagd-core µs':>14} {'ratio':>8}  target")
    failed = 0
    for name, a, b in rows:
        target = 4.0 if "socket" in name else 5.0
        ok = b / a >= target
        failed += not ok
        print(f"{name:<26} {a:>12.2f} {b:>14.2f} {b / a:>7.1f}x  >= {target:.0f}x {'PASS' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


def socket_evaluate_all_us(doc: dict, sample: list[dict], rounds: int) -> float:
    """Microseconds per ``evaluate_all`` round trip through a real agent serving ``doc``."""
    work = tempfile.mkdtemp(prefix="fsk-be-", dir="/tmp")
    flags, sock_path = os.path.join(work, "flags.json"), os.path.join(work, "a.sock")
    with open(flags, "w") as f:
        json.dump(doc, f)
    agent = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--flags", flags, "--socket", sock_path,
                              "--fractional", "v3", "--log-level", "warning"], cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock_path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        reader = s.makefile("rb")
        requests = [json.dumps({"op": "evaluate_all", "context": c}).encode() + b"\n" for c in sample]

        def run() -> None:
            for line in requests:
                s.sendall(line)
                answer = json.loads(reader.readline())
                assert answer["ok"] and len(answer["result"]["flags"]) == len(doc["flags"])

        run()  # warm up
        return per_call_us(run, len(requests), rounds)
    finally:
        agent.terminate()
        agent.wait(10)


if __name__ == "__main__":
    main()
