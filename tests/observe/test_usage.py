"""Per-flag usage in ``stats``, the latency and write counters, and ``flagsock usage``."""

from __future__ import annotations

import json
import socket
import time

import pytest

from agent.engine.model import Resolution
from agent.frontends.stats import LATENCY_SLOTS, Stats
from tests.helpers import LineClient, write_json
from tests.process import AgentProcess, flagsock

FLAGS = {"flags": {
    "rollout": {"enabled": True, "rollout_percentage": 50},
    "everyone": {"enabled": True},
    "unused": {"enabled": False},
    "typed": {"state": "ENABLED", "variants": {"a": "x"}, "defaultVariant": "a"},
}}


@pytest.fixture
def flag_file(tmp_path):
    return write_json(tmp_path / "flags.json", FLAGS)


async def test_stats_usage_counts_flag_variant_and_reason(start_agent, flag_file):
    running = await start_agent([flag_file])
    async with await LineClient.connect(running.socket_path) as client:
        answers = {}
        for i in range(40):
            result = await client.result({"op": "evaluate", "flag": "rollout", "context": {"targetingKey": f"u{i}"}})
            answers[result["variant"]] = answers.get(result["variant"], 0) + 1
        await client.result({"op": "evaluate", "flag": "rollout"})  # no targetingKey: off, DEFAULT
        await client.result({"op": "evaluate", "flag": "everyone"})
        assert (await client.request({"op": "evaluate", "flag": "typed", "type": "boolean"}))["ok"] is False
        assert (await client.request({"op": "evaluate", "flag": "no-such-flag"}))["ok"] is False
        await client.result({"op": "evaluate_all", "context": {"targetingKey": "u1"}})
        stats = await client.result({"op": "stats"})
    usage = stats["usage"]
    assert set(usage) == set(FLAGS["flags"])  # every served flag, the never-evaluated one too
    rollout = usage["rollout"]
    assert rollout["evaluations"] == 42
    assert sum(rollout["variants"].values()) == 42
    assert rollout["reasons"]["DEFAULT"] == 1 and rollout["reasons"]["TARGETING_MATCH"] == 41
    assert rollout["variants"]["on"] + rollout["variants"]["off"] == 42 and rollout["variants"]["on"] >= answers.get("on", 0)
    assert usage["everyone"] == {"evaluations": 2, "variants": {"on": 2}, "reasons": {"STATIC": 2},
                                 "last_evaluated": usage["everyone"]["last_evaluated"]}
    assert usage["unused"]["evaluations"] == 1  # evaluate_all asked for it
    assert usage["typed"]["errors"] == {"TYPE_MISMATCH": 1} and usage["typed"]["reasons"] == {"ERROR": 1, "STATIC": 1}
    assert "no-such-flag" not in usage and stats["not_found"] == 1
    now = time.time()
    for item in usage.values():
        at = time.mktime(time.strptime(item["last_evaluated"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert now - 5 < at <= now + 1
    assert stats["evaluations"]["rollout"] == 42  # the v1 field: successful evaluations per flag
    assert sum(stats["usage"]["rollout"]["variants"].values()) == stats["evaluations"]["rollout"]


async def test_a_flag_never_asked_for_has_no_last_evaluated(start_agent, flag_file):
    running = await start_agent([flag_file])
    async with await LineClient.connect(running.socket_path) as client:
        await client.result({"op": "evaluate", "flag": "everyone"})
        usage = (await client.result({"op": "stats"}))["usage"]
    assert usage["unused"] == {"evaluations": 0, "variants": {}, "reasons": {}, "last_evaluated": None}
    assert usage["everyone"]["last_evaluated"] is not None


def test_last_evaluated_is_when_the_counts_were_seen_to_move():
    stats = Stats()
    res = Resolution("f", True, "on", "STATIC")
    stats.requests["evaluate"] += 1
    stats.usage[("f", "on", "STATIC")] += 1
    stats.notice_usage(now=100.0)
    stats.notice_usage(now=200.0)  # nothing moved: still 100
    assert stats.last_evaluated == {"f": 100.0}
    stats.count("f", res)  # another frontend's evaluation
    stats.notice_usage(now=300.0)
    assert stats.last_evaluated == {"f": 300.0}
    assert stats.usage_report(["f", "g"])["f"]["last_evaluated"] == "1970-01-01T00:05:00.000Z"


def test_latency_histogram_buckets_by_powers_of_two_microseconds():
    stats = Stats()
    for seconds in (0.0000004, 0.0000015, 0.000003, 0.5, 100.0):
        stats.observe("evaluate", seconds)
    histogram = stats.latency["evaluate"]
    counts = histogram[:LATENCY_SLOTS]
    assert counts[0] == 1 and counts[1] == 1 and counts[2] == 1  # < 1 us, < 2 us, < 4 us
    assert counts[19] == 1  # 0.5 s: < 2**19 us
    assert counts[27] == 1  # 100 s: < 2**27 us (/metrics puts it in +Inf)
    assert sum(counts) == 5 and histogram[LATENCY_SLOTS] == pytest.approx(100.5000049)


async def test_requests_are_timed_and_writes_counted(start_agent, flag_file):
    running = await start_agent([flag_file])
    async with await LineClient.connect(running.socket_path) as client:
        for _ in range(5):
            await client.result({"op": "evaluate", "flag": "everyone"})
        await client.request({"op": "evaluate", "flag": "nope"})
        await client.result({"op": "set", "flag": "new", "enabled": True})
        await client.request({"op": "set", "flag": "new", "enabled": "yes"})
        await client.request({"op": "nonsense"})
        stats = await client.result({"op": "stats"})
    latency = running.service.stats.latency
    assert sum(latency["evaluate"][:LATENCY_SLOTS]) == 6
    assert sum(latency["set"][:LATENCY_SLOTS]) == 2
    assert set(latency) == {"evaluate", "set", "stats"}  # not the unknown op: no histogram per name sent
    assert stats["writes"] == {"set_ok": 1, "set_refused": 1}


def ask(sock: str, requests: list[dict]) -> list[dict]:
    """Pipeline ``requests`` on one connection; every answer must be ok."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        reader = s.makefile("rb")
        answers = [json.loads(reader.readline()) for _ in requests]
    assert all(a["ok"] for a in answers), answers
    return answers


def test_cli_usage_and_stale(flag_file, sock_dir):
    sock = str(sock_dir / "u.sock")
    with AgentProcess(["--flags", str(flag_file), "--socket", sock]):
        ask(sock, [{"op": "evaluate", "flag": "rollout", "context": {"targetingKey": f"user-{i}"}} for i in range(20)]
            + [{"op": "evaluate", "flag": "everyone"}])
        out = flagsock("usage", "--socket", sock)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split()[:3] == ["flag", "evaluations", "last"]
        rollout = lines[1].split()
        assert rollout[:2] == ["rollout", "20"] and rollout[2].endswith("s") and rollout[3] == "ago"
        assert {rollout[4], rollout[6]} == {"on", "off"}
        assert float(rollout[5].rstrip("%")) + float(rollout[7].rstrip("%")) == pytest.approx(100, abs=0.2)
        assert lines[2].split() == ["everyone", "1", lines[2].split()[2], "ago", "on", "100.0%"]
        assert sorted(line.split()[0] for line in lines[3:]) == ["typed", "unused"]
        assert all(line.split()[1:3] == ["0", "never"] for line in lines[3:])
        stale = flagsock("usage", "--stale", "--socket", sock).stdout.splitlines()
        assert stale[0].startswith("never evaluated since the agent started ") and stale[0].endswith(": 2")
        assert stale[1:3] == ["  typed", "  unused"]
        assert stale[3] == "gave every caller the same answer: 1"
        assert stale[4] == "  everyone: variant on for all 1 evaluations (STATIC)"
        as_json = json.loads(flagsock("usage", "--stale", "--json", "--socket", sock).stdout)
        assert as_json["never_evaluated"] == ["typed", "unused"]


def test_a_frontend_counting_the_old_way_still_shows_in_usage():
    stats = Stats()
    stats.evaluations["legacy"] += 3  # as frontends written before usage do
    stats.requests["x"] += 1
    report = stats.usage_report(["legacy"])
    assert report["legacy"]["evaluations"] == 3 and report["legacy"]["last_evaluated"] is not None
    assert stats.to_wire(0, 0, 0)["evaluations"] == {"legacy": 3}
