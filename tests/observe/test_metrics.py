"""/metrics: the agent's counters in the Prometheus text format, parsed by the format's own parser
and scraped by a real Prometheus."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.frontends.metrics import CONTENT_TYPE, AgentCollector, render_metrics
from tests.helpers import LineClient, write_json

FLAGS = {"flags": {
    "checkout": {"state": "ENABLED", "variants": {"new": True, "old": False}, "defaultVariant": "old",
                 "targeting": {"fractional": [["new", 50], ["old", 50]]}},
    "banner": {"enabled": True},
}}


@pytest.fixture
def flag_file(tmp_path):
    return write_json(tmp_path / "flags.json", FLAGS)


def families(text: bytes) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text.decode())}


async def load(path: str) -> None:
    async with await LineClient.connect(path) as client:
        for i in range(30):
            await client.result({"op": "evaluate", "flag": "checkout", "context": {"targetingKey": f"user-{i}"}})
        await client.result({"op": "evaluate", "flag": "banner"})
        await client.request({"op": "evaluate", "flag": "banner", "type": "string"})
        await client.request({"op": "evaluate", "flag": "missing"})


async def test_metrics_parse_and_count_what_was_served(start_agent, flag_file):
    running = await start_agent([flag_file])
    await load(running.socket_path)
    parsed = families(render_metrics(running.service))
    evaluations = {(s.labels["feature_flag_key"], s.labels["feature_flag_result_variant"],
                    s.labels["feature_flag_result_reason"]): s.value
                   for s in parsed["flagsock_feature_flag_evaluations"].samples}
    assert parsed["flagsock_feature_flag_evaluations"].type == "counter"
    assert evaluations[("checkout", "new", "targeting_match")] + evaluations[("checkout", "old", "targeting_match")] == 30
    assert 5 < evaluations[("checkout", "new", "targeting_match")] < 25
    assert evaluations[("banner", "on", "static")] == 1
    errors = {(s.labels["feature_flag_key"], s.labels["error_type"]): s.value
              for s in parsed["flagsock_feature_flag_evaluation_errors"].samples}
    assert errors == {("banner", "type_mismatch"): 1, ("", "flag_not_found"): 1}

    latency = parsed["flagsock_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets = [(float(s.labels["le"]), s.value) for s in latency.samples
               if s.name.endswith("_bucket") and s.labels["op"] == "evaluate"]
    counts = [n for _, n in buckets]
    assert counts == sorted(counts) and buckets[-1] == (float("inf"), 33)
    count = next(s.value for s in latency.samples if s.name.endswith("_count") and s.labels["op"] == "evaluate")
    assert count == 33

    single = {name: family.samples[0].value for name, family in parsed.items() if len(family.samples) == 1}
    assert single["flagsock_revision"] == 1 and single["flagsock_flags"] == 2
    assert single["flagsock_connections"] >= 1 and single["flagsock_subscribers"] == 0
    up = parsed["flagsock_source_up"].samples
    assert [(s.labels["source"], s.value) for s in up] == [(str(flag_file), 1)]
    assert 0 <= parsed["flagsock_source_age_seconds"].samples[0].value < 60
    reloads = {s.labels["result"]: s.value for s in parsed["flagsock_reloads"].samples}
    assert reloads["ok"] >= 1 and reloads["failed"] == 0
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


async def test_the_direct_writing_says_what_the_collector_says(start_agent, flag_file):
    running = await start_agent([flag_file])
    await load(running.socket_path)
    running.service.stats.usage[('odd "key"\\\n', None, "DISABLED")] += 2  # label escaping
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(running.service))

    def samples(text: bytes) -> set:
        return {(s.name, tuple(sorted(s.labels.items())), s.value)
                for name, family in families(text).items() if name.startswith("flagsock_feature_flag")
                for s in family.samples}

    assert samples(render_metrics(running.service)) == samples(generate_latest(registry))
    assert ("flagsock_feature_flag_evaluations_total",
            (("feature_flag_key", 'odd "key"\\\n'), ("feature_flag_result_reason", "disabled"),
             ("feature_flag_result_variant", "")), 2) in samples(render_metrics(running.service))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port: int, expression: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.load(answer)["data"]["result"]
    except OSError:
        return []  # not up yet


async def test_get_metrics_on_the_http_listener(start_agent, flag_file):
    port = free_port()
    running = await start_agent([flag_file], http=(f"127.0.0.1:{port}",))
    await load(running.socket_path)

    def get() -> tuple[int, str, bytes]:
        ofrep = urllib.request.Request(f"http://127.0.0.1:{port}/ofrep/v1/evaluate/flags/checkout", method="POST",
                                       data=b'{"context": {"targetingKey": "over-http"}}',
                                       headers={"content-type": "application/json"})
        with urllib.request.urlopen(ofrep, timeout=5) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.status, answer.headers["content-type"], answer.read()

    status, content_type, body = await trio.to_thread.run_sync(get)
    assert status == 200 and content_type == CONTENT_TYPE
    parsed = families(body)
    total = sum(s.value for s in parsed["flagsock_feature_flag_evaluations"].samples
                if s.labels["feature_flag_key"] == "checkout")
    assert total == 31  # 30 over the socket, 1 through OFREP


async def test_a_real_prometheus_stores_per_flag_series(start_agent, flag_file, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed: apt-get install prometheus (Debian), as .ci/run does")
    metrics_port, prometheus_port = free_port(), free_port()
    running = await start_agent([flag_file], http=(f"127.0.0.1:{metrics_port}",))
    await load(running.socket_path)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: flagsock\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")  # GET /metrics
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prometheus_port}"], stdout=log, stderr=log)
    try:
        expression = 'flagsock_feature_flag_evaluations_total{feature_flag_key="checkout"}'
        with trio.fail_after(60):
            while not (series := await trio.to_thread.run_sync(query, prometheus_port, expression)):
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                await trio.sleep(0.25)  # Prometheus scrapes on its own clock: nothing to wait on
        by_variant = {s["metric"]["feature_flag_result_variant"]: float(s["value"][1]) for s in series}
        assert set(by_variant) == {"new", "old"} and sum(by_variant.values()) == 30
        assert all(s["metric"]["job"] == "flagsock" for s in series)
        up = await trio.to_thread.run_sync(query, prometheus_port, 'flagsock_source_up')
        assert [float(s["value"][1]) for s in up] == [1.0]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
