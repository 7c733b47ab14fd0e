"""Counters for the ``stats`` op and ``/metrics``: cheap increments on the request path, the rest
derived when someone reads them.

An evaluation costs one dict increment: its (flag, variant, reason) in :attr:`Stats.usage`.
Per-flag totals, the variant and reason splits are sums over it made at read time, and when a
flag was last evaluated is noticed by :meth:`Stats.notice_usage` (once a second by
:func:`run_usage_clock`, and at every read) rather than stamped on every request.
Request latency is one histogram per op with power-of-two buckets: an observation is a
subtraction, a ``bit_length`` and a list increment.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import trio

from agent.store.store import iso_time
from protocol.errors import FLAG_NOT_FOUND

#: Latency buckets: slot i counts requests that took less than 2**i microseconds (and at least
#: half that). /metrics shows the first LATENCY_BUCKETS - 1 (up to 2**21 us, about 2 s) and folds
#: the rest into +Inf. 64 slots hold any duration a float of seconds can say in microseconds
#: below 2**64, so no clamp is needed on the request path; the slot after them holds the sum.
LATENCY_BUCKETS = 23
LATENCY_SLOTS = 64


class Stats:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests: Counter[str] = Counter()
        #: (flag, variant or None, reason) -> evaluations answered so.
        self.usage: Counter[tuple[str, str | None, str]] = Counter()
        #: flag -> evaluations counted without their variant and reason: frontends written before
        #: ``usage`` (``stats.evaluations[key] += 1``); prefer :meth:`count`.
        self.evaluations: Counter[str] = Counter()
        #: (flag, error code) -> evaluations that failed so; the flag is None for FLAG_NOT_FOUND
        #: (anyone can ask for any name: those must not grow a key each).
        self.errors: Counter[tuple[str | None, str]] = Counter()
        #: Per flag, the wall-clock time an evaluation of it was last noticed.
        self.last_evaluated: dict[str, float] = {}
        self._noticed: dict[Any, int] = {}
        self._noticed_requests = -1
        #: Evaluations counted through count() (other frontends), so notice_usage sees them move.
        self.counted_elsewhere = 0
        #: op -> [count per latency slot (LATENCY_SLOTS of them)..., total seconds]
        self.latency: dict[str, list[float]] = {}
        #: (op, "ok" or "refused") -> writes (set, delete)
        self.writes: Counter[tuple[str, str]] = Counter()
        self.connections_open = 0
        self.connections_total = 0
        self.connections_refused = 0

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)

    # -- the request path ------------------------------------------------------------------------

    def count(self, key: str, res: Any) -> None:
        """Count one evaluation of ``key`` answered with ``res`` (for frontends other than the
        NDJSON ops, which inline the increment)."""
        self.counted_elsewhere += 1
        if res.error_code is None:
            self.usage[(key, res.variant, res.reason)] += 1
        else:
            self.count_error(key, res.error_code)

    def count_error(self, key: str, code: str) -> None:
        self.errors[(None if code == FLAG_NOT_FOUND else key, code)] += 1

    def observe(self, op: str, seconds: float) -> None:
        """Add one request of ``op`` that took ``seconds`` to its latency histogram."""
        histogram = self.latency.get(op)
        if histogram is None:
            histogram = self.latency[op] = [0] * (LATENCY_SLOTS + 1)
        histogram[int(seconds * 1e6).bit_length()] += 1
        histogram[LATENCY_SLOTS] += seconds

    # -- reading ---------------------------------------------------------------------------------

    def notice_usage(self, now: float | None = None) -> None:
        """Stamp ``now`` as the last evaluation of every flag whose counts moved since last time."""
        total = sum(self.requests.values()) + self.counted_elsewhere
        if total == self._noticed_requests:
            return  # no request at all since: nothing can have moved
        self._noticed_requests = total
        now = time.time() if now is None else now
        noticed = self._noticed
        last = self.last_evaluated
        for counted in (self.usage, self.errors, self.evaluations):
            for key, n in list(counted.items()):
                if noticed.get(key) != n:
                    noticed[key] = n
                    flag = key if type(key) is str else key[0]
                    if flag is not None:
                        last[flag] = now

    def usage_report(self, served: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Per flag (every served flag, and any other evaluated since start): evaluations,
        variants, reasons, errors and when it was last evaluated."""
        self.notice_usage()
        report: dict[str, dict[str, Any]] = {}
        for key in served:
            report[key] = {"evaluations": 0, "variants": {}, "reasons": {}, "last_evaluated": None}
        for (key, variant, reason), n in list(self.usage.items()):
            item = report.get(key) or report.setdefault(key, {"evaluations": 0, "variants": {}, "reasons": {},
                                                              "last_evaluated": None, "served": False})
            item["evaluations"] += n
            if variant is not None:
                item["variants"][variant] = item["variants"].get(variant, 0) + n
            item["reasons"][reason] = item["reasons"].get(reason, 0) + n
        for key, n in list(self.evaluations.items()):  # counted without variant and reason
            item = report.get(key) or report.setdefault(key, {"evaluations": 0, "variants": {}, "reasons": {},
                                                              "last_evaluated": None, "served": False})
            item["evaluations"] += n
        for (key, code), n in list(self.errors.items()):
            if key is None:
                continue
            item = report.get(key) or report.setdefault(key, {"evaluations": 0, "variants": {}, "reasons": {},
                                                              "last_evaluated": None, "served": False})
            item["evaluations"] += n
            item["reasons"]["ERROR"] = item["reasons"].get("ERROR", 0) + n
            item.setdefault("errors", {})[code] = n
        for key, at in self.last_evaluated.items():
            if key in report:
                report[key]["last_evaluated"] = iso_time(at)
        return report

    def evaluation_totals(self) -> dict[str, int]:
        """Successful evaluations per flag (the v1 ``stats`` field)."""
        totals: Counter[str] = Counter(self.evaluations)
        for (key, _, _), n in list(self.usage.items()):
            totals[key] += n
        return dict(totals)

    def to_wire(self, reloads_ok: int, reloads_failed: int, subscribers: int) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "evaluations": self.evaluation_totals(),
            "reloads": {"ok": reloads_ok, "failed": reloads_failed},
            "connections": {
                "open": self.connections_open,
                "total": self.connections_total,
                "refused_busy": self.connections_refused,
            },
            "subscribers": subscribers,
            "uptime_s": self.uptime(),
            "not_found": sum(n for (key, _), n in self.errors.items() if key is None),
            "writes": {f"{op}_{result}": n for (op, result), n in sorted(self.writes.items())},
        }


async def run_usage_clock(stats: Stats, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Notice, once a second, which flags were evaluated (``last_evaluated`` to the second)."""
    task_status.started()
    while True:
        await trio.sleep(1.0)
        stats.notice_usage()
