"""``flagsock serve``: the composition root. Read the settings once, build each stage with only
what it needs, wire them together, serve, and stop gracefully.

Start-up order matters to systemd and to tests: every setting that can be wrong is checked
(:func:`plan`, raising :class:`StartupError`) before a flag is read or a socket is bound; the
first snapshot is loaded (or its failure recorded) before the socket is served; READY=1 and
``task_status.started`` come only once every frontend accepts and every source is watched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from agent import __version__
from agent.assembly import (HttpListener, build_service, build_sources, open_http_listeners, split_inherited,
                            open_listener, plan)
from agent.config import ServeConfig
from agent.frontends.ndjson.server import Server
from agent.frontends.service import Service
from agent.frontends.stats import run_usage_clock
from agent.host import systemd
from agent.host.activation import InheritedSocket
from agent.host.errors import StartupError
from agent.host.listener import BoundSocket
from agent.sources.base import LoadOptions, Source
from agent.store.history import HISTORY_FILE_NAME, History
from agent.store.reloader import Reloader
from agent.store.store import Store

log = logging.getLogger("flagsock")


@attrs.define
class Running:
    """A serving agent, as handed to ``task_status.started``: tests and the CLI drive it."""

    service: Service
    server: Server
    bound: BoundSocket
    _stop: trio.Event
    #: The HTTP frontends (``--http``), in the order given.
    http: list[HttpListener] = attrs.Factory(list)

    @property
    def socket_path(self) -> str | None:
        return self.bound.path

    def stop(self) -> None:
        self._stop.set()


def status_line(store: Store) -> str:
    snap = store.snapshot
    text = f"serving revision {snap.revision}, {len(snap.flags)} flags"
    if store.last_error is not None:
        text += f"; last error: {store.last_error.message}"
    return text[:400]


async def open_history(config: ServeConfig) -> History:
    """The change history, read back from the state directory (StartupError if it cannot be kept
    there); in memory only without one."""
    state_dir = config.state_dir  # --state-dir, else systemd's $STATE_DIRECTORY (see ServeConfig)
    if state_dir is None:
        log.info("no --state-dir (or $STATE_DIRECTORY): the change history is kept in memory only")
        return History(max_bytes=config.history_max_bytes)
    history = History(os.path.join(state_dir, HISTORY_FILE_NAME), max_bytes=config.history_max_bytes)
    try:
        await trio.to_thread.run_sync(lambda: os.makedirs(state_dir, mode=0o750, exist_ok=True))
        await trio.to_thread.run_sync(history.load)
    except OSError as exc:
        raise StartupError(f"--state-dir {state_dir}: cannot keep the change history there "
                           f"({exc.strerror or exc}); fix the directory or leave --state-dir out") from None
    return history


async def run_agent(
    config: ServeConfig,
    *,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
    watch: Any = None,
    handle_signals: bool = True,
    notifier: Any = None,
    inherited: Sequence[InheritedSocket] | None = None,
    poll_seconds: float | None = None,
) -> None:
    """Serve ``config`` until SIGTERM/SIGINT (or :meth:`Running.stop`).

    Args:
        inherited: the sockets systemd passed in (default: read from ``LISTEN_FDS``); those named
            ``http`` are served as HTTP, the first other one as the NDJSON socket.

    Raises:
        StartupError: a setting or the host's state does not allow starting (nothing was bound).

    Resource handling: owns the listening sockets; a socket file it created is removed on exit,
    an inherited one is left alone.
    """
    if inherited is None:
        inherited = systemd.inherited_sockets()
    ndjson, http_inherited = split_inherited(config, inherited)
    settings = plan(config, binds=not ndjson)
    sources = build_sources(config, watch=watch, poll_seconds=poll_seconds)
    if notifier is None:
        notifier = systemd.Notifier.from_environment()
    history = await open_history(config)
    store = Store([s.name for s in sources], subscriber_queue=config.subscriber_queue, history=history)
    reloader = Reloader(store, sources, LoadOptions(fractional=config.fractional, invalid_flags=config.invalid_flags,
                                                    limits=config.limits, load_timeout=config.load_timeout))
    if settings.write_target is None:
        log.info("set and delete are off: %s", settings.read_only_reason)
    stop = trio.Event()
    # Handlers go in first: a SIGTERM that arrives while the flags load, or the moment the socket
    # answers, must stop the agent gracefully, not kill it. Signals queue until read below.
    signals_cm = (trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
                  if handle_signals else contextlib.nullcontext())
    with signals_cm as signals:
        first = await reloader.reload("start")
        if first.errors:
            log.warning("started without some flags: %s", "; ".join(first.errors))
        bound = open_listener(config, ndjson, settings.socket_gid)
        http: list[HttpListener] = []
        try:
            service = build_service(config, settings, store, reloader, sources)
            server = Server(service, bound.sock, max_connections=config.max_connections,
                            max_line_bytes=config.max_line_bytes, send_timeout=config.send_timeout)
            http = open_http_listeners(config, service, settings.socket_gid, http_inherited)
            reloader.on_reload.append(lambda result: notifier.status(status_line(store)))
            async with trio.open_nursery() as nursery:
                if signals is not None:
                    nursery.start_soon(_handle_signals, signals, reloader, notifier, store, stop)
                await _start_serving(nursery, server, http, history, service, sources, notifier)
                log.info("flagsock %s listening on %s; %s", __version__, bound.path or "an inherited socket",
                         status_line(store))
                notifier.ready(status_line(store))
                task_status.started(Running(service, server, bound, stop, http))
                await stop.wait()
                notifier.stopping()
                await _stop_serving(server, http, store, history, config.shutdown_timeout)
                nursery.cancel_scope.cancel()
        finally:
            for listener in http:
                listener.close()
            bound.cleanup()
            if bound.owned:
                bound.sock.close()
    log.info("stopped")


async def _start_serving(nursery: trio.Nursery, server: Server, http: Sequence[HttpListener], history: History,
                         service: Service, sources: Sequence[Source], notifier: Any) -> None:
    """Start every frontend, the history writer and the usage clock, then watch the sources;
    each ``start`` returns once that part really serves or watches."""
    await nursery.start(server.serve)
    for listener in http:
        await nursery.start(listener.server.serve)
        log.info("serving HTTP (OFREP, SSE, probes, metrics) on %s", listener.where)
    await nursery.start(history.run)
    await nursery.start(run_usage_clock, service.stats)
    await _watch_sources(nursery, sources, service.reloader)
    await nursery.start(systemd.run_watchdog, notifier)


async def _stop_serving(server: Server, http: Sequence[HttpListener], store: Store, history: History,
                        grace: float) -> None:
    """No new connections; open ones get ``grace`` seconds to finish; the history is flushed."""
    log.info("stopping: no new connections; %d open get %.1f s to finish", server.connection_count, grace)
    server.shutdown()
    for listener in http:
        listener.server.shutdown()
    store.close_subscribers()
    with trio.move_on_after(grace):
        await server.wait_connections_closed()
        for listener in http:
            await listener.server.wait_connections_closed()
    await history.flush()


async def _watch_sources(nursery: trio.Nursery, sources: Sequence[Source], reloader: Reloader) -> None:
    async def changed(why: str) -> None:
        await reloader.reload(why)

    for source in sources:
        await nursery.start(source.watch, changed)


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
