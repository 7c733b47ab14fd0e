"""The HTTP/1.1 frontend: OFREP, its SSE change stream and the probes, over the agent's Service.

The daemon (``agent/daemon.py``, ``open_http_listeners``) wires it as::

    check_http_address(text, allow_remote=config.http_allow_remote)   # build_config: exit 2
    sock = bind_tcp(host, port)            # or host.listener.bind_unix(path, ...).sock
    server = HttpServer(build_router(service), sock, limits=HttpLimits(send_timeout=...),
                        connections=SharedConnectionLimit(service.stats, config.max_connections))
    await nursery.start(server.serve)
    ...
    server.shutdown(); store.close_subscribers(); await server.wait_connections_closed()
"""

from __future__ import annotations

from typing import Any

from .address import (HttpAddress, HttpAddressError, bind_tcp, check_http_address, check_listening_socket,
                      parse_http_address)
from .ofrep import EVENTS_PATH, Ofrep
from .probes import Probes
from .routing import Request, Response, Router, StreamResponse
from .limits import ConnectionLimit, HttpLimits, SharedConnectionLimit
from .server import HttpServer
from .sse import EventStream

__all__ = [
    "HttpAddress", "HttpAddressError", "bind_tcp", "check_http_address", "check_listening_socket", "parse_http_address",
    "ConnectionLimit", "SharedConnectionLimit", "HttpLimits", "HttpServer", "Router", "Request", "Response", "StreamResponse",
    "build_router",
]


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
    return router
