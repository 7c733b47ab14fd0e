"""Hostile flag files and contexts against a real agent: time, peak RSS and what the agent did.

    .venv/bin/python bench/bench_hostile_files.py [--agent-tree DIR] [--only NAME ...]

Each attack of issue 13 point 1 (and the 5,000-key context of point 2) runs against a fresh
``python -m agent serve`` in its own temporary directory, with an address-space limit
(``RLIMIT_AS``) so that an agent without the limits fails instead of taking the host with it.
``--agent-tree`` imports the agent from another copy (e.g. the code before a change), so the
same script measures before and after. Figures belong in bench/RESULTS.md, not in tests: the
tests (tests/engine/test_limits.py, tests/agent/test_hostile_files.py) check the behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import gen_flags  # noqa: E402

PYTHON = sys.executable
GOOD = {"flags": {"a": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def deep_file(depth: int) -> bytes:
    """A flag whose variant value is ``depth`` arrays deep (the document 4 levels more)."""
    doc = {"flags": {"a": {"state": "ENABLED", "variants": {"on": nested(depth), "off": [0]}, "defaultVariant": "on"}}}
    return json.dumps(doc).encode()


def doubling_file(doublings: int) -> bytes:
    """About 1 KB: each evaluator refers twice to the one before, so the last expands 2**n times."""
    evaluators: dict[str, Any] = {"e0": {"==": [{"var": "x"}, 1]}}
    for i in range(1, doublings + 1):
        evaluators[f"e{i}"] = {"or": [{"$ref": f"e{i - 1}"}, {"$ref": f"e{i - 1}"}]}
    flag = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
            "targeting": {"if": [{"$ref": f"e{doublings}"}, "on", "off"]}}
    return json.dumps({"$evaluators": evaluators, "flags": {"a": flag}}).encode()


def many_flags_file(path: str, count: int) -> int:
    """``count`` small flagd flags, written in pieces; returns the size."""
    with open(path, "w") as f:
        f.write('{"flags": {')
        for i in range(count):
            f.write(('' if i == 0 else ',') + f'"f{i:07d}": {{"state": "ENABLED", "variants": {{"on": true}}, '
                    '"defaultVariant": "on"}')
        f.write("}}")
    return os.path.getsize(path)


# --- the agent ------------------------------------------------------------------------------

class Agent:
    """``python -m agent serve`` under an address-space limit. Resource handling: owns the process."""

    def __init__(self, tree: Path, work: str, flags: str, *, limit_gb: float, extra: list[str] = ()) -> None:
        self.sock = os.path.join(work, "a.sock")
        self.log = os.path.join(work, "agent.log")
        cmd = [PYTHON, "-m", "agent", "serve", "--flags", flags, "--socket", self.sock, "--log-level", "warning", *extra]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        limit = int(limit_gb * (1 << 30))

        def cap() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        with open(self.log, "ab") as log:
            self.t0 = time.monotonic()
            self.proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=log, preexec_fn=cap)
        self.peak_kb = 0

    def sample(self) -> None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
        except OSError:
            pass

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sample()
            if done():
                return True
            time.sleep(0.01)
        return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def answers(self) -> bool:
        return request(self.sock, {"op": "ping"}, 0.5) is not None

    def wait_serving(self, timeout: float) -> str:
        """'serving', or how it ended."""
        ok = self.wait_until(lambda: not self.alive() or self.answers(), timeout)
        if not self.alive():
            return f"exited with status {self.proc.returncode}: {self.last_log_line()}"
        return "serving" if ok else f"no answer within {timeout:.0f} s"

    def last_log_line(self) -> str:
        try:
            lines = [ln.strip() for ln in open(self.log, errors="replace") if ln.strip()]
        except OSError:
            return ""
        return lines[-1][:160] if lines else ""

    def stop(self, timeout: float = 10.0) -> str:
        if not self.alive():
            return f"had exited ({self.proc.returncode})"
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return "stopped on SIGTERM"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"did not stop within {timeout:.0f} s of SIGTERM (killed)"

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


def request(path: str, message: dict, timeout: float) -> dict | None:
    """One request on a new connection; None when nothing answers in time."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps(message).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    return None
                buf += chunk
            return json.loads(buf)
    except (OSError, ValueError):
        return None


def answer_code(answer: dict | None) -> str:
    if answer is None:
        return "nothing"
    return "ok" if answer.get("ok") else answer.get("error", {}).get("code", "?")


def health_text(agent: Agent) -> str:
    answer = request(agent.sock, {"op": "health"}, 5)
    if answer is None or not answer.get("ok"):
        return "no health answer"
    result = answer["result"]
    error = (result.get("last_error") or {}).get("message", "")
    error = error.split(": ", 1)[-1] if error.startswith("/") else error  # without the temporary path
    if "[0][0][0]" in error:
        error = error[:error.index("[0][0][0]")] + "[0][0]...[0]" + error[error.rindex("[0]") + 3:]
    return f"health {result.get('status')}, {result.get('flag_count')} flags" + (f": {error[:110]}" if error else "")


def replace(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --- the attacks ----------------------------------------------------------------------------

Row = tuple[str, str, float, float]


def good_agent(tree: Path, work: str, limit_gb: float = 3) -> tuple[Agent, str]:
    path = os.path.join(work, "flags.json")
    replace(path, json.dumps(GOOD).encode())
    agent = Agent(tree, work, path, limit_gb=limit_gb)
    state = agent.wait_serving(30)
    if state != "serving":
        raise RuntimeError(f"the agent did not start on a good file: {state}")
    return agent, path


def attack_deep_start(tree: Path, work: str) -> Row:
    path = os.path.join(work, "flags.json")
    replace(path, deep_file(300))
    agent = Agent(tree, work, path, limit_gb=3)
    state = agent.wait_serving(30)
    took = time.monotonic() - agent.t0
    outcome = state if state != "serving" else health_text(agent)
    agent.stop()
    return "300-deep variant, at start", outcome, took, agent.peak_mb


def attack_deep_reload(tree: Path, work: str) -> Row:
    agent, path = good_agent(tree, work)
    replace(path, deep_file(300))
    t0 = time.monotonic()
    answer = request(agent.sock, {"op": "reload"}, 30)
    took = time.monotonic() - t0
    outcome = f"reload answered {answer_code(answer)}; {health_text(agent)}"
    agent.stop()
    return "300-deep variant, hot reload", outcome, took, agent.peak_mb


def attack_deep_sighup(tree: Path, work: str) -> Row:
    agent, path = good_agent(tree, work)
    with open(path, "wb") as f:  # in place
        f.write(deep_file(600))
    t0 = time.monotonic()
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_until(lambda: not agent.alive() or "degraded" in health_text(agent), 10)
    took = time.monotonic() - t0
    outcome = (f"died: status {agent.proc.returncode}" if not agent.alive() else f"alive; {health_text(agent)}")
    agent.stop()
    return "600-deep variant, SIGHUP", outcome, took, agent.peak_mb


def attack_deep_set(tree: Path, work: str) -> Row:
    agent, _ = good_agent(tree, work)
    outcomes = []
    t0 = time.monotonic()
    for depth in (252, 900):
        definition = {"state": "ENABLED", "variants": {"on": nested(depth), "off": [0]}, "defaultVariant": "on"}
        answer = request(agent.sock, {"op": "set", "flag": "deep", "definition": definition}, 30)
        code = "ok" if answer and answer.get("ok") else (answer or {}).get("error", {}).get("code")
        outcomes.append(f"{depth} deep: {code}")
    took = time.monotonic() - t0
    agent.stop()
    return "set with a deep definition", ", ".join(outcomes), took, agent.peak_mb


def attack_doubling(tree: Path, work: str) -> Row:
    agent, path = good_agent(tree, work)
    data = doubling_file(18)
    replace(path, data)
    t0 = time.monotonic()
    answer = request(agent.sock, {"op": "reload"}, 300)
    took = time.monotonic() - t0
    agent.sample()
    outcome = f"{len(data)} bytes; reload answered {answer_code(answer)}; {health_text(agent)}"
    agent.stop()
    return "$evaluators doubled 18 times", outcome, took, agent.peak_mb


def attack_fifo(tree: Path, work: str) -> Row:
    agent, path = good_agent(tree, work)
    os.unlink(path)
    os.mkfifo(path)
    t0 = time.monotonic()
    answer = request(agent.sock, {"op": "reload"}, 10)
    took = time.monotonic() - t0
    outcome = f"reload answered {answer_code(answer)}; " if answer else "reload: no answer within 10 s; "
    outcome += (health_text(agent) if answer else "") + "; " + agent.stop(10)
    return "FIFO at the flag path", outcome, took, agent.peak_mb


def attack_dev_zero(tree: Path, work: str) -> Row:
    path = os.path.join(work, "flags.json")
    os.symlink("/dev/zero", path)
    agent = Agent(tree, work, path, limit_gb=2)
    state = agent.wait_serving(30)
    took = time.monotonic() - agent.t0
    outcome = (state if state != "serving" else health_text(agent)) + " (address space capped at 2 GiB)"
    agent.stop()
    return "link to /dev/zero, at start", outcome, took, agent.peak_mb


def attack_million(tree: Path, work: str) -> Row:
    path = os.path.join(work, "flags.json")
    size = many_flags_file(path, 1_000_000)
    agent = Agent(tree, work, path, limit_gb=6)
    state = agent.wait_serving(180)
    took = time.monotonic() - agent.t0
    outcome = f"{size / 1e6:.0f} MB; " + (state if state != "serving" else health_text(agent))
    agent.stop()
    return "a million flags, at start", outcome, took, agent.peak_mb


def attack_many_small(tree: Path, work: str) -> Row:
    """Just under the size limit, four times the flag limit."""
    path = os.path.join(work, "flags.json")
    size = many_flags_file(path, 190_000)
    agent = Agent(tree, work, path, limit_gb=6)
    state = agent.wait_serving(180)
    took = time.monotonic() - agent.t0
    outcome = f"{size / 1e6:.1f} MB; " + (state if state != "serving" else health_text(agent))
    agent.stop()
    return "190,000 flags in 16 MB, at start", outcome, took, agent.peak_mb


def attack_context(tree: Path, work: str) -> Row:
    path = os.path.join(work, "flags.json")
    gen_flags.write(path, 10_000, "flagd", "r0")
    agent = Agent(tree, work, path, limit_gb=3)
    if agent.wait_serving(60) != "serving":
        raise RuntimeError("the agent did not start on the 10,000-flag file")
    context = {f"attr{i}": f"value-{i}" for i in range(5000)}
    context["targetingKey"] = "user-7"
    best = float("inf")
    for _ in range(3):
        t0 = time.monotonic()
        answer = request(agent.sock, {"op": "evaluate_all", "context": context}, 120)
        best = min(best, time.monotonic() - t0)
        assert answer and answer.get("ok"), answer
    agent.sample()
    agent.stop()
    return "evaluate_all, 5,000-key context, 10,000 flags", "best of 3 round trips", best, agent.peak_mb


def attack_silent(tree: Path, work: str) -> Row:
    agent, path = good_agent(tree, work)
    out = []
    for name, data in (("{}", b"{}"),
                       ("duplicate key", b'{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}, '
                                         b'"defaultVariant": "on"}, "a": {"state": "DISABLED", '
                                         b'"variants": {"on": true}, "defaultVariant": "on"}}}'),
                       ("2**64 variant", b'{"flags": {"a": {"state": "ENABLED", "variants": '
                                         b'{"on": 18446744073709551616}, "defaultVariant": "on"}}}')):
        replace(path, data)
        request(agent.sock, {"op": "reload"}, 10)
        answer = request(agent.sock, {"op": "evaluate", "flag": "a"}, 5) or {}
        value = answer.get("result", {}).get("value", answer.get("error", {}).get("code"))
        status = (request(agent.sock, {"op": "health"}, 5) or {}).get("result", {}).get("status")
        out.append(f"{name}: health {status}, a={value!r}")
        replace(path, json.dumps(GOOD).encode())
        request(agent.sock, {"op": "reload"}, 10)
    agent.stop()
    return "{} / duplicate keys / 2**64", "; ".join(out), 0.0, agent.peak_mb


ATTACKS: dict[str, Callable[[Path, str], Row]] = {
    "deep-start": attack_deep_start, "deep-reload": attack_deep_reload, "deep-sighup": attack_deep_sighup,
    "deep-set": attack_deep_set, "doubling": attack_doubling, "fifo": attack_fifo, "dev-zero": attack_dev_zero,
    "million": attack_million, "many-small": attack_many_small, "context": attack_context,
    "silent": attack_silent,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent-tree", metavar="DIR", default=str(ROOT),
                        help="import the agent from DIR (a copy of agent/ and protocol/), e.g. the code before a change")
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS), help="run only these (repeatable)")
    args = parser.parse_args()
    tree = Path(args.agent_tree).resolve()
    print(f"agent code from {tree}; python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}\n")
    print(f"| {'attack':<44} | {'seconds':>8} | {'peak RSS':>9} | what the agent did |")
    print(f"|{'-' * 46}|{'-' * 10}:|{'-' * 11}:|---|")
    for name in args.only or list(ATTACKS):
        work = tempfile.mkdtemp(prefix="fsk-hf-", dir="/tmp")
        try:
            label, outcome, took, peak = ATTACKS[name](tree, work)
        except RuntimeError as exc:
            label, outcome, took, peak = name, f"not measured: {exc}", 0.0, 0.0
        finally:
            subprocess.run(["rm", "-rf", work], check=False)
        print(f"| {label:<44} | {took:>8.2f} | {peak:>6.0f} MB | {outcome} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
