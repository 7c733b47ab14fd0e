"""Counters for the ``stats`` op: cheap increments on the request path, a dict on demand."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests: Counter[str] = Counter()
        self.evaluations: Counter[str] = Counter()
        self.connections_open = 0
        self.connections_total = 0
        self.connections_refused = 0

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def to_wire(self, reloads_ok: int, reloads_failed: int, subscribers: int) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "evaluations": dict(self.evaluations),
            "reloads": {"ok": reloads_ok, "failed": reloads_failed},
            "connections": {
                "open": self.connections_open,
                "total": self.connections_total,
                "refused_busy": self.connections_refused,
            },
            "subscribers": subscribers,
            "uptime_s": self.uptime(),
        }
