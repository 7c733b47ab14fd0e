"""Fixtures for the HTTP frontend: a real server on a Unix socket and on 127.0.0.1:0.

``http_server(service, ...)`` serves any service (a bare Store for the protocol and limit
tests, which may then run under ``autojump_clock``); ``http_agent(files, ...)`` starts a real
agent (``start_agent``) and serves its app over HTTP beside the NDJSON socket.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs
import pytest

from agent.frontends.http.limits import HttpLimits

from agent.frontends.http.server import HttpServer

from agent.frontends.http.address import bind_tcp

from agent.frontends.http.routes import build_router
from agent.host.listener import bind_unix
from agent.frontends.stats import Stats
from agent.sources.base import LoadOptions
from agent.store.reloader import Reloader
from agent.store.store import Store


@attrs.define
class Served:
    """One HTTP frontend under test: where it listens and the objects behind it."""

    service: Any
    server: HttpServer
    unix_server: HttpServer
    port: int
    unix_path: str
    running: Any = None
    flag_file: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@attrs.define
class BareService:
    """The least a frontend needs: a store (no sources), its reloader and counters."""

    store: Store = attrs.field(factory=lambda: Store([]))
    stats: Stats = attrs.field(factory=Stats)
    version: str = "test"
    context_values: dict = attrs.field(factory=dict)
    reloader: Reloader = attrs.field(default=attrs.Factory(lambda self: Reloader(self.store, [], LoadOptions()),
                                                           takes_self=True))


@pytest.fixture
def http_server(nursery, sock_dir):
    sockets: list[socket.socket] = []

    async def start(service: Any = None, *, limits: HttpLimits = HttpLimits(), connections: Any = None,
                    keepalive: float = 15.0) -> Served:
        service = service if service is not None else BareService()
        router = build_router(service, keepalive=keepalive)
        tcp = bind_tcp("127.0.0.1", 0)
        bound = bind_unix(str(sock_dir / "http.sock"))
        sockets.extend([tcp, bound.sock])
        server = HttpServer(router, tcp, limits=limits, connections=connections)
        unix_server = HttpServer(router, bound.sock, limits=limits, connections=connections)
        await nursery.start(server.serve)
        await nursery.start(unix_server.serve)
        return Served(service, server, unix_server, tcp.getsockname()[1], bound.path)

    yield start
    for s in sockets:
        s.close()


@pytest.fixture
def http_agent(start_agent, sock_dir):
    """A real agent started by the daemon with ``--http 127.0.0.1:0 --http unix:SOCK_DIR/http.sock``."""

    async def start(flag_files: list[os.PathLike[str] | str], **settings: Any) -> Served:
        unix_path = str(sock_dir / "http.sock")
        running = await start_agent(flag_files, http=("127.0.0.1:0", f"unix:{unix_path}"), **settings)
        tcp, unix = running.http
        assert unix.path == unix_path
        return Served(running.service, tcp.server, unix.server, tcp.port, unix_path, running)

    return start
