"""Every HTTP path the agent serves, and the handler behind it."""

from __future__ import annotations

from typing import Any

from agent.frontends.http.ofrep import EVENTS_PATH, Ofrep
from agent.frontends.http.routing import Response
from agent.frontends.http.probes import Probes
from agent.frontends.http.routing import Router
from agent.frontends.http.sse import EventStream
from agent.frontends.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, render_metrics


def build_router(service: Any, *, keepalive: float = 15.0, inactivity_delay: int = 120) -> Router:
    """Every HTTP path the agent serves, over ``service`` (``store``, ``stats``, ``version``).

    Args:
        keepalive: seconds between comment lines on an idle SSE stream.
        inactivity_delay: the ``inactivityDelaySec`` advertised for the SSE stream.
    """
    ofrep = Ofrep(service, events_path=EVENTS_PATH, inactivity_delay=inactivity_delay)
    events = EventStream(service, ofrep, keepalive=keepalive)
    probes = Probes(service)
    router = Router()
    router.add("POST", "/ofrep/v1/evaluate/flags/{key}", ofrep.evaluate_flag)
    router.add("POST", "/ofrep/v1/evaluate/flags", ofrep.evaluate_all)
    router.add("GET", EVENTS_PATH, events.handle)
    router.add("GET", "/healthz", probes.healthz)
    router.add("GET", "/readyz", probes.readyz)
    router.add("GET", "/metrics", lambda request: Response(200, render_metrics(service), METRICS_CONTENT_TYPE))
    return router
