"""Kubernetes-style probes: ``/healthz`` (the agent serves) and ``/readyz`` (it serves what it should).

``/readyz`` is 200 when every flag source is loaded and current (its newest version loaded, not
a stale copy), else 503; either way the body is what the ``health`` op answers, so a load
balancer's log says why.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.frontends.ops import op_health

from .routing import JSON, Request, Response

__all__ = ["Probes"]


class Probes:
    def __init__(self, service: Any) -> None:
        self.service = service

    def healthz(self, request: Request) -> Response:
        return Response(200, b'{"status":"serving","revision":%d}' % self.service.store.snapshot.revision, JSON)

    def readyz(self, request: Request) -> Response:
        health = op_health(self.service, None, {"op": "health"})
        return Response(200 if is_ready(health) else 503, orjson.dumps(health), JSON)


def is_ready(health: dict[str, Any]) -> bool:
    """Every source loaded, with no error for its newest version and not served from a stale copy."""
    return all(s.get("loaded") and s.get("error") is None and not s.get("stale") for s in health["sources"])
