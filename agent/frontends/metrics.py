"""``GET /metrics``: the agent's own counters in the Prometheus text format, read at scrape time.

A ``prometheus_client`` custom collector (prometheus/client_python, "custom collectors") turns
:class:`~agent.frontends.stats.Stats`, the store and its sources into metric families when a
scrape asks, so the request path does no more than the integer increments it already does.

Names follow Prometheus' conventions (a ``flagsock_`` prefix, base units, ``_total`` counters);
the evaluation counter's labels are OpenFeature's semantic conventions for a flag evaluation
(``feature_flag.key``, ``feature_flag.result.variant``, ``feature_flag.result.reason`` with
its lower-case values, ``error.type``), dots written as underscores as Prometheus needs.

``prometheus_client`` is imported on the first scrape, not when the agent starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from agent.frontends.stats import LATENCY_BUCKETS, LATENCY_SLOTS

#: What render_metrics produces (the text exposition format, version 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds of the latency buckets, in seconds, as ``le`` labels.
_BOUNDS = [repr(2**i / 1e6) for i in range(LATENCY_BUCKETS - 1)]


_EVALUATIONS = ("flagsock_feature_flag_evaluations", "Flag evaluations answered, by flag, variant and reason.",
                ("feature_flag_key", "feature_flag_result_variant", "feature_flag_result_reason"))
_ERRORS = ("flagsock_feature_flag_evaluation_errors", "Flag evaluations that failed, by flag and error type "
           "(flag not found is counted without the flag: any name can be asked for).",
           ("feature_flag_key", "error_type"))


class AgentCollector:
    """Collects the families of one agent (a :class:`~agent.frontends.service.Service`).

    ``per_flag=False`` leaves out the two families with a sample per flag (evaluations and
    evaluation errors): :func:`render_metrics` writes those itself, see there.
    """

    def __init__(self, service: Any, *, per_flag: bool = True) -> None:
        self.service = service
        self.per_flag = per_flag

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        service = self.service
        stats, store = service.stats, service.store
        snap = store.snapshot
        if self.per_flag:
            yield from self._evaluations(stats)
        yield self._latency(stats)

        requests = CounterMetricFamily("flagsock_requests", "Requests answered, by op.", labels=["op"])
        for op, n in sorted(stats.requests.items()):
            requests.add_metric([op], n)
        yield requests
        reloads = CounterMetricFamily("flagsock_reloads", "Loads of the flag sources, by result.", labels=["result"])
        reloads.add_metric(["ok"], store.reloads_ok)
        reloads.add_metric(["failed"], store.reloads_failed)
        yield reloads
        writes = CounterMetricFamily("flagsock_writes", "set and delete requests, by op and result (ok, refused).",
                                     labels=["op", "result"])
        for op in ("set", "delete"):
            for result in ("ok", "refused"):
                writes.add_metric([op, result], stats.writes.get((op, result), 0))
        yield writes

        yield GaugeMetricFamily("flagsock_revision", "The revision being served.", value=snap.revision)
        yield GaugeMetricFamily("flagsock_flags", "Flags being served.", value=len(snap.flags))
        yield GaugeMetricFamily("flagsock_connections_open", "Client connections open now.", value=stats.connections_open)
        yield CounterMetricFamily("flagsock_connections", "Client connections accepted.", value=stats.connections_total)
        yield CounterMetricFamily("flagsock_connections_refused", "Connections refused past --max-connections.",
                                  value=stats.connections_refused)
        yield GaugeMetricFamily("flagsock_subscribers", "Connections subscribed to change events.",
                                value=store.subscriber_count)
        yield from self._sources(store, snap)
        yield GaugeMetricFamily("flagsock_uptime_seconds", "Seconds since the agent started.", value=stats.uptime())
        info = GaugeMetricFamily("flagsock_build_info", "The agent's version.", labels=["version"])
        info.add_metric([service.version], 1)
        yield info

    def _evaluations(self, stats: Any) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        evaluations = CounterMetricFamily(_EVALUATIONS[0], _EVALUATIONS[1], labels=list(_EVALUATIONS[2]))
        for (key, variant, reason), n in list(stats.usage.items()):
            evaluations.add_metric([key, variant or "", reason.lower()], n)
        yield evaluations
        errors = CounterMetricFamily(_ERRORS[0], _ERRORS[1], labels=list(_ERRORS[2]))
        for (key, code), n in list(stats.errors.items()):
            errors.add_metric([key or "", code.lower()], n)
        yield errors

    def _latency(self, stats: Any) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily("flagsock_request_duration_seconds",
                                       "Time to answer a request in the agent, by op (from its line read to "
                                       "its answer encoded).", labels=["op"])
        for op, histogram in sorted(stats.latency.items()):
            buckets, total = [], 0
            for bound, n in zip(_BOUNDS, histogram):
                total += n
                buckets.append((bound, total))
            total += sum(histogram[LATENCY_BUCKETS - 1:LATENCY_SLOTS])
            buckets.append(("+Inf", total))
            family.add_metric([op], buckets, sum_value=histogram[LATENCY_SLOTS])
        return family

    def _sources(self, store: Any, snap: Any) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("flagsock_source_up", "1 when the source's newest version is loaded and served, "
                               "0 when it failed to load (an older version may still be served).", labels=["source"])
        age = GaugeMetricFamily("flagsock_source_age_seconds", "Seconds since the source last loaded successfully "
                                "(absent until it has).", labels=["source"])
        flags = GaugeMetricFamily("flagsock_source_flags", "Flags the source holds.", labels=["source"])
        now = time.time()
        loaded_at = getattr(store, "loaded_at", {})
        for source in snap.sources:
            up.add_metric([source.path], 1 if source.loaded and source.path not in store.errors else 0)
            flags.add_metric([source.path], len(source.flags))
            at = loaded_at.get(source.path)
            if at is not None:
                age.add_metric([source.path], round(now - at, 3))
        yield up
        yield age
        yield flags


def render_metrics(service: Any) -> bytes:
    """The agent's metrics in the Prometheus text exposition format (``CONTENT_TYPE``).

    The families with a sample per flag are written here directly, in the same format:
    ``prometheus_client`` builds a labelled sample object and then formats it, several
    microseconds a sample, so 10,000 flags with two variants each took 150-300 ms a scrape.
    Here each counter key's line up to its value is made once and kept (:data:`_LINE_HEADS`),
    so a scrape is a dict lookup and a concatenation a sample (bench/RESULTS.md). The rest, a
    few dozen samples, goes through ``generate_latest``.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    stats = service.stats
    parts = [_counter_text(_EVALUATIONS, stats.usage, _evaluation_labels),
             _counter_text(_ERRORS, stats.errors, _error_labels)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(service, per_flag=False))
    parts.append(generate_latest(registry).decode())
    return "".join(parts).encode()


#: Per family and counter key, its sample line up to the value; bounded (cleared when full).
_LINE_HEADS: dict[str, dict[tuple[Any, ...], str]] = {}
_MAX_HEADS = 200_000


def _evaluation_labels(key: tuple[str, str | None, str]) -> tuple[str, ...]:
    flag, variant, reason = key
    return flag, variant or "", reason.lower()


def _error_labels(key: tuple[str | None, str]) -> tuple[str, ...]:
    flag, code = key
    return flag or "", code.lower()


def _counter_text(family: tuple[str, str, tuple[str, ...]], counter: Any, labels_of: Any) -> str:
    """One counter family as exposition text: HELP, TYPE, then ``NAME_total{labels} n`` a key."""
    name, doc, labels = family
    heads = _LINE_HEADS.setdefault(name, {})
    if len(heads) > _MAX_HEADS:
        heads.clear()
    lines = [f"# HELP {name}_total {doc}", f"# TYPE {name}_total counter"]
    append = lines.append
    for key, n in list(counter.items()):
        head = heads.get(key)
        if head is None:
            label_text = ",".join(f'{label}="{_escape(value)}"' for label, value in zip(labels, labels_of(key)))
            head = heads[key] = f"{name}_total{{{label_text}}} "
        append(head + str(n))
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    """A label value as the text format writes it (backslash, double quote and newline escaped)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


__all__ = ["CONTENT_TYPE", "AgentCollector", "render_metrics"]
