"""Build each stage of the agent from the settings: what the daemon wires together.

Everything here runs before serving. :func:`plan` checks what can be wrong (users, groups, the
socket's directory, the write target) before anything is bound or loaded; the builders make the
sources, the writer and the listeners, each with only the settings it needs. Heavy optional
parts are imported only when configured: httpx for remote sources, h11 for ``--http``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from agent import __version__
from agent.config import ConfigError, ServeConfig, is_remote, parse_context_value
from agent.frontends.access import WriteAccess
from agent.frontends.service import Service
from agent.host.accounts import group_id, user_id
from agent.host.activation import InheritedSocket
from agent.host.errors import StartupError
from agent.host.listener import BoundSocket, ListenerError, bind_unix, check_socket_path
from agent.sources.base import Source
from agent.sources.etcd.layout import SCHEME as ETCD, EtcdLocation
from agent.sources.files import FileSource
from agent.sources.http import HttpSource, is_http
from agent.store.reloader import Reloader
from agent.store.store import Store
from agent.writes.durable import remove_stale_temps, why_not_writable
from agent.writes.writer import Writer

if TYPE_CHECKING:
    from agent.frontends.http.limits import HttpLimits
    from agent.frontends.http.server import HttpServer

log = logging.getLogger("flagsock")


@attrs.frozen
class Plan:
    """Everything the settings resolve to, found before anything is bound or loaded."""

    write_uids: frozenset[int]
    write_gids: frozenset[int]
    socket_gid: int | None
    #: The file that takes writes, or None with ``read_only_reason``.
    write_target: str | None
    read_only_reason: str


def plan(config: ServeConfig, *, binds: bool) -> Plan:
    """Resolve users, groups and the write target; check the socket can be made (``binds``: no
    socket was inherited). Raises StartupError naming the setting."""
    if binds:
        check_socket_path(config.socket)
    uids = frozenset(user_id(u, "--allow-write") for u in config.allow_write)
    gids = frozenset(group_id(g, "--allow-write-group") for g in config.allow_write_group)
    socket_gid = group_id(config.socket_group, "--socket-group") if config.socket_group else None
    target, reason = choose_write_target(config)
    return Plan(uids, gids, socket_gid, target, reason)


def choose_write_target(config: ServeConfig) -> tuple[str | None, str]:
    """The file that takes writes, or None and why there is none."""
    if config.read_only:
        return None, "this agent was started with --read-only"
    # As the store names them: files, and etcd prefixes (an http(s) source is read-only).
    writable = [p for p in config.flags if not is_remote(p) or p.startswith(ETCD)]
    read_only = [p for p in config.flags if p not in writable]
    if config.write_to:
        wanted = os.path.abspath(config.write_to)
        matching = [p for p in writable if p == config.write_to or (not is_remote(p) and os.path.abspath(p) == wanted)]
        if not matching:  # build_config refuses this; a config built by hand may still hold it
            return None, f"--write-to {config.write_to} is not one of the flag files this agent serves"
        target = matching[-1]
    elif len(writable) == 1:
        target = writable[0]
    elif not writable:
        if read_only:
            return None, f"{read_only[0]} {HttpSource.read_only_reason}, and this agent serves no flag file"
        return None, "this agent serves no flag file"
    else:
        return None, (f"this agent serves {len(writable)} flag files or etcd prefixes and was not told which one "
                      "takes writes; restart it with --write-to PATH-OR-URL")
    reason = None if is_remote(target) else why_not_writable(target)
    if reason:
        return None, reason
    return target, ""


@attrs.define
class HttpListener:
    """One HTTP socket served (an ``--http`` address or a socket systemd passed in named ``http``):
    its server and socket (``port`` for TCP, ``path`` for Unix)."""

    server: "HttpServer"
    sock: Any
    bound: BoundSocket | None = None
    port: int | None = None
    #: Where it listens, for the log.
    where: str = ""

    @property
    def path(self) -> str | None:
        return self.bound.path if self.bound is not None else None

    def close(self) -> None:
        """Close the socket; a socket file the agent bound is removed (an inherited one is systemd's)."""
        if self.bound is not None:
            self.bound.cleanup()
        self.sock.close()


def http_limits(config: ServeConfig) -> "HttpLimits":
    """The HTTP frontend's sizes and deadlines, as configured."""
    from agent.frontends.http.limits import HttpLimits

    return HttpLimits(max_header_bytes=config.http_max_header_bytes, max_body_bytes=config.http_max_body_bytes,
                      header_timeout=config.http_header_timeout, body_timeout=config.http_body_timeout,
                      idle_timeout=config.http_idle_timeout, send_timeout=config.send_timeout)


def check_inherited_http(config: ServeConfig, inherited: Sequence[InheritedSocket]) -> list[str]:
    """Where each inherited HTTP socket listens; one beyond loopback is refused as ``--http`` would be.

    Raises:
        ConfigError: a TCP socket on an address that is not loopback, without ``--http-allow-remote``.
    """
    from agent.frontends.http.address import HttpAddressError, check_listening_socket

    try:
        return [check_listening_socket(i.sock, i.describe(), allow_remote=config.http_allow_remote)
                for i in inherited]
    except HttpAddressError as exc:
        raise ConfigError(str(exc)) from None


def open_http_listeners(config: ServeConfig, service: Service, socket_gid: int | None,
                        inherited: Sequence[InheritedSocket] = ()) -> list[HttpListener]:
    """Build a server for every HTTP socket systemd passed in (``inherited``, checked by
    :func:`check_inherited_http`) and for every ``--http`` address (build_config checked them),
    all sharing the NDJSON server's connection cap.

    Resource handling: on failure the sockets bound so far are closed before the error leaves.
    """
    listeners: list[HttpListener] = []
    if not config.http and not inherited:
        return listeners
    # h11 and the HTTP frontend are imported only by agents that serve HTTP.
    from agent.frontends.http.server import HttpServer
    from agent.frontends.http.limits import SharedConnectionLimit
    from agent.frontends.http.address import bind_tcp, check_http_address
    from agent.frontends.http.routes import build_router

    router = build_router(service)
    shared = SharedConnectionLimit(service.stats, config.max_connections)
    limits = http_limits(config)

    def add(sock: Any, bound: BoundSocket | None, where: str) -> None:
        port = None if sock.family == socket.AF_UNIX else sock.getsockname()[1]
        server = HttpServer(router, sock, limits=limits, connections=shared, server_header=f"flagsock/{__version__}")
        listeners.append(HttpListener(server, sock, bound, port, where))

    try:
        for item, where in zip(inherited, check_inherited_http(config, inherited)):
            # An inherited socket is systemd's: never unlinked, so its BoundSocket is not owned.
            path = item.sock.getsockname() if item.sock.family == socket.AF_UNIX else None
            bound = BoundSocket(item.sock, path or None, owned=False) if isinstance(path, str) else None
            add(item.sock, bound, f"{where} (from systemd)")
        for text in config.http:
            address = check_http_address(text, allow_remote=config.http_allow_remote)
            if address.path is not None:
                bound = bind_unix(address.path, mode=config.socket_mode, gid=socket_gid)
                add(bound.sock, bound, bound.path or address.path)
            else:
                sock = bind_tcp(address.host, address.port)
                add(sock, None, f"{address.host}:{sock.getsockname()[1]}")
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def open_listener(config: ServeConfig, inherited: Sequence[InheritedSocket], socket_gid: int | None) -> BoundSocket:
    """The NDJSON socket: the first one systemd passed in (``inherited``: those not named ``http``),
    else ``--socket`` bound here."""
    if inherited:
        if len(inherited) > 1:
            log.warning("systemd passed %d NDJSON sockets (%s); serving the first", len(inherited),
                        ", ".join(i.describe() for i in inherited))
        sock = inherited[0].sock
        try:
            path = sock.getsockname() or None
        except OSError:
            path = None
        log.info("serving on the socket systemd passed in (%s)", path or "unnamed")
        return BoundSocket(sock=sock, path=path if isinstance(path, str) else None, owned=False)
    return bind_unix(config.socket, mode=config.socket_mode, gid=socket_gid)


def build_sources(config: ServeConfig, *, watch: Any = None, poll_seconds: float | None = None) -> list[Source]:
    """One source per ``--flags`` value, in merge order: a URL or a file."""
    extra = {} if poll_seconds is None else {"poll_seconds": poll_seconds}
    sources: list[Source] = []
    for name in config.flags:
        if is_http(name):
            sources.append(HttpSource(name, poll_interval=config.poll_interval, state_dir=config.state_dir))
        elif name.startswith(ETCD):
            sources.append(etcd_source(config, name))
        elif is_remote(name):
            raise StartupError(f"--flags {name}: unknown kind of source; give a file path, an http(s):// URL "
                               "or etcd://HOST:PORT/PREFIX")
        else:
            sources.append(FileSource(name, watch=watch, **extra))
    return sources


def etcd_source(config: ServeConfig, url: str) -> Source:
    """An ``etcd://`` source with the agent's etcd credentials and TLS files (read now: a missing
    password file stops the start, naming it)."""
    # Imported here: httpx takes 130 ms to import, which an agent serving files never pays.
    from agent.sources.etcd.settings import EtcdSettings
    from agent.sources.etcd.source import EtcdSource

    location = EtcdLocation.parse(url)
    password = None
    if config.etcd_password_file is not None:
        try:
            with open(config.etcd_password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"--etcd-password-file {config.etcd_password_file}: {exc.strerror or exc}") from None
    for option, path in (("--etcd-ca", config.etcd_ca), ("--etcd-cert", config.etcd_cert),
                         ("--etcd-key", config.etcd_key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{option} {path}: no such file")
    settings = EtcdSettings(location.endpoints, user=config.etcd_user, password=password, ca=config.etcd_ca,
                            cert=config.etcd_cert, key=config.etcd_key)
    return EtcdSource(location, settings, state_dir=config.state_dir)


def build_writer(store: Store, reloader: Reloader, config: ServeConfig, target: str | None,
                 sources: Sequence[Source] = ()) -> Any:
    """The Writer of the target file, the EtcdWriter of the target etcd source, or None."""
    if target is None:
        return None
    if is_remote(target):
        from agent.writes.etcd import EtcdWriter

        source = next(s for s in sources if s.name == EtcdLocation.parse(target).url)
        log.info("set and delete are committed in %s", target)
        return EtcdWriter(store, reloader, source, fractional=config.fractional, limits=config.limits)
    for name in remove_stale_temps(target):
        log.info("removed %s, a temporary file an interrupted write left behind", name)
    log.info("set and delete change %s", target)
    return Writer(store, reloader, target, fractional=config.fractional, limits=config.limits)


def split_inherited(config: ServeConfig, inherited: Sequence[InheritedSocket]) -> tuple[list, list]:
    """The sockets systemd passed in: (NDJSON ones, HTTP ones named ``http``), the HTTP ones checked.

    Raises:
        StartupError: an HTTP socket beyond loopback without ``--http-allow-remote``, or HTTP
            sockets without any NDJSON socket.
    """
    ndjson = [i for i in inherited if not i.serves_http]
    http = [i for i in inherited if i.serves_http]
    check_inherited_http(config, http)
    if http and not ndjson and not config.socket:
        raise ListenerError("systemd passed only HTTP sockets (named http); the NDJSON socket comes from "
                            "flagsock.socket or --socket PATH")
    return ndjson, http


def build_service(config: ServeConfig, settings: Plan, store: Store, reloader: Reloader,
                  sources: Sequence[Source]) -> Service:
    """What every frontend sees, with the writer built first and handed in."""
    return Service(
        store=store, reloader=reloader, version=__version__,
        access=WriteAccess(settings.write_uids, settings.write_gids),
        writer=build_writer(store, reloader, config, settings.write_target, sources),
        read_only_reason=settings.read_only_reason,
        context_values=dict(parse_context_value(v) for v in config.context_values),
    )
