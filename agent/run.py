"""``flagsock serve``: load, listen, watch, and stop gracefully.

Start-up order matters to systemd and to tests: the first snapshot is loaded (or its failure
recorded) before the socket is served, and READY=1 / ``task_status.started`` come only once the
server is accepting.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

import attrs
import trio

from . import __version__
from .app import App
from .config import ServeConfig
from .frontends.http import (HttpLimits, HttpServer, SharedConnectionLimit, bind_tcp, build_router,
                             check_http_address)
from .listener import BoundSocket, ListenerError, bind_unix
from .loader import LoadOptions
from .reloader import Reloader
from .server import Server
from .store import Store
from .watcher import SourceWatcher
from .writes import attach_writer

log = logging.getLogger("flagsock")


@attrs.define
class Running:
    """A serving agent, as handed to ``task_status.started``: tests and the CLI drive it."""

    app: App
    server: Server
    bound: BoundSocket
    _stop: trio.Event
    #: The HTTP frontends (``--http``), in the order given, with what each is bound to.
    http: list[HttpListener] = attrs.Factory(list)

    @property
    def socket_path(self) -> str | None:
        return self.bound.path

    def stop(self) -> None:
        self._stop.set()


@attrs.define
class HttpListener:
    """One ``--http`` address served: its server and socket (``port`` for TCP, ``path`` for Unix)."""

    server: HttpServer
    sock: Any
    bound: BoundSocket | None = None
    port: int | None = None

    @property
    def path(self) -> str | None:
        return self.bound.path if self.bound is not None else None

    def close(self) -> None:
        if self.bound is not None:
            self.bound.cleanup()
        self.sock.close()


def open_http_listeners(config: ServeConfig, app: App) -> list[HttpListener]:
    """Bind every ``--http`` address (already checked by build_config) and build its server.

    Resource handling: on failure the sockets bound so far are closed before the error leaves.
    """
    listeners: list[HttpListener] = []
    if not config.http:
        return listeners
    router = build_router(app)
    shared = SharedConnectionLimit(app.stats, config.max_connections)
    limits = HttpLimits(send_timeout=config.send_timeout)
    try:
        for text in config.http:
            address = check_http_address(text, allow_remote=config.http_allow_remote)
            if address.path is not None:
                bound = bind_unix(address.path, mode=config.socket_mode, group=config.socket_group)
                sock, port = bound.sock, None
            else:
                bound, sock = None, bind_tcp(address.host, address.port)
                port = sock.getsockname()[1]
            server = HttpServer(router, sock, limits=limits, connections=shared, server_header=f"flagsock/{__version__}")
            listeners.append(HttpListener(server, sock, bound, port))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def status_line(store: Store) -> str:
    snap = store.snapshot
    text = f"serving revision {snap.revision}, {len(snap.flags)} flags"
    if store.last_error is not None:
        text += f"; last error: {store.last_error.message}"
    return text[:400]


def open_listener(config: ServeConfig, inherited: list[Any]) -> BoundSocket:
    if inherited:
        if len(inherited) > 1:
            log.warning("systemd passed %d sockets; serving the first", len(inherited))
        sock = inherited[0]
        try:
            path = sock.getsockname() or None
        except OSError:
            path = None
        log.info("serving on the socket systemd passed in (%s)", path or "unnamed")
        return BoundSocket(sock=sock, path=path if isinstance(path, str) else None, owned=False)
    if not config.socket:
        raise ListenerError("no socket: pass --socket PATH, or start the agent through systemd socket activation")
    return bind_unix(config.socket, mode=config.socket_mode, group=config.socket_group)


async def run_agent(
    config: ServeConfig,
    *,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
    watch: Any = None,
    handle_signals: bool = True,
    notifier: Any = None,
    inherited: list[Any] | None = None,
    poll_seconds: float | None = None,
) -> None:
    """Serve ``config`` until SIGTERM/SIGINT (or :meth:`Running.stop`).

    Resource handling: owns the listening socket; a socket file it created is removed on exit,
    an inherited one is left alone.
    """
    from . import systemd

    if notifier is None:
        notifier = systemd.Notifier.from_environment()
    if inherited is None:
        inherited = systemd.inherited_sockets()
    store = Store(config.flags, subscriber_queue=config.subscriber_queue)
    reloader = Reloader(store, LoadOptions(fractional=config.fractional, invalid_flags=config.invalid_flags))
    stop = trio.Event()
    # Handlers go in first: a SIGTERM that arrives while the flags load, or the moment the socket
    # answers, must stop the agent gracefully, not kill it. Signals queue until read below.
    signals_cm = (trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
                  if handle_signals else contextlib.nullcontext())
    with signals_cm as signals:
        first = await reloader.reload("start")
        if first.errors:
            log.warning("started without some flags: %s", "; ".join(first.errors))
        bound = open_listener(config, inherited)
        http: list[HttpListener] = []
        try:
            app = App(config, store, reloader, version=__version__)
            attach_writer(app, config)
            http = open_http_listeners(config, app)
            server = Server(app, bound.sock, max_connections=config.max_connections,
                            max_line_bytes=config.max_line_bytes, send_timeout=config.send_timeout)
            reloader.on_reload.append(lambda result: notifier.status(status_line(store)))
            watcher_kwargs = {} if poll_seconds is None else {"poll_seconds": poll_seconds}
            watcher = SourceWatcher(config.flags, lambda: reloader.reload("file change"), watch=watch,
                                    **watcher_kwargs)
            async with trio.open_nursery() as nursery:
                if signals is not None:
                    nursery.start_soon(_handle_signals, signals, reloader, notifier, store, stop)
                await nursery.start(server.serve)
                for listener in http:
                    await nursery.start(listener.server.serve)
                    log.info("serving HTTP (OFREP, SSE, probes) on %s", listener.path or f"port {listener.port}")
                if config.flags:
                    await nursery.start(watcher.run)
                await nursery.start(systemd.run_watchdog, notifier)
                log.info("flagsock %s listening on %s; %s", __version__, bound.path or "an inherited socket",
                         status_line(store))
                notifier.ready(status_line(store))
                task_status.started(Running(app, server, bound, stop, http))
                await stop.wait()
                notifier.stopping()
                log.info("stopping: no new connections; %d open get %.1f s to finish",
                         server.connection_count, config.shutdown_timeout)
                server.shutdown()
                for listener in http:
                    listener.server.shutdown()
                store.close_subscribers()
                with trio.move_on_after(config.shutdown_timeout):
                    await server.wait_connections_closed()
                    for listener in http:
                        await listener.server.wait_connections_closed()
                nursery.cancel_scope.cancel()
        finally:
            for listener in http:
                listener.close()
            bound.cleanup()
            if bound.owned:
                bound.sock.close()
    log.info("stopped")


async def _handle_signals(signals: Any, reloader: Reloader, notifier: Any, store: Store, stop: trio.Event) -> None:
    async for signum in signals:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: reloading flag sources")
            notifier.reloading()
            result = await reloader.reload("SIGHUP")
            notifier.ready(status_line(store))
            if result.errors:
                log.warning("reload on SIGHUP kept revision %d: %s", result.revision, "; ".join(result.errors))
        else:
            log.info("%s: shutting down", signal.Signals(signum).name)
            stop.set()
