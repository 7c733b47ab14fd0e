"""Inherited sockets named ``http``: the loopback rule and the daemon's wiring, in process.

The end-to-end case (systemd-socket-activate handing over NDJSON and HTTP sockets by name) is in
test_end_to_end.py. The sockets here that are not on loopback are bound but never listen, so
nothing a test makes is reachable from another machine: the rule looks only at the address.
"""

from __future__ import annotations

import functools
import socket

import pytest
import trio

from agent.config import ConfigError, ServeConfig
from agent.assembly import check_inherited_http
from agent.daemon import run_agent
from agent.frontends.http.address import HttpAddressError, check_listening_socket
from agent.host.activation import InheritedSocket
from agent.host.listener import ListenerError
from tests.conftest import _SilentNotifier
from tests.helpers import LineClient, write_json

from ..http.flags import flags
from ..http.rawhttp import RawHttp


def bound(family: int, host: str, *, listen: bool = False, v6only: bool = True) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
    sock.bind((host, 0))
    if listen:
        sock.listen()
    return sock


@pytest.mark.parametrize(("family", "host", "v6only"), [
    (socket.AF_INET, "0.0.0.0", True),
    (socket.AF_INET6, "::", True),
    (socket.AF_INET6, "::", False),
])
def test_a_tcp_socket_beyond_loopback_is_refused_unless_remote_is_allowed(family, host, v6only) -> None:
    with bound(family, host, v6only=v6only) as sock:
        with pytest.raises(HttpAddressError, match=r"inherited fd 4 .* listens on .* not a loopback address.*"
                                                   r"ListenStream=127\.0\.0\.1:PORT.*--http-allow-remote"):
            check_listening_socket(sock, "inherited fd 4 (name 'http')")
        assert check_listening_socket(sock, "fd 4", allow_remote=True).endswith(f":{sock.getsockname()[1]}")


@pytest.mark.parametrize(("family", "host", "v6only"), [
    (socket.AF_INET, "127.0.0.1", True),
    (socket.AF_INET, "127.3.4.5", True),
    (socket.AF_INET6, "::1", True),
    (socket.AF_INET6, "::ffff:127.0.0.1", False),
])
def test_a_tcp_socket_on_loopback_passes(family, host, v6only) -> None:
    with bound(family, host, v6only=v6only) as sock:
        assert check_listening_socket(sock, "fd 3").endswith(f":{sock.getsockname()[1]}")


async def test_the_agent_refuses_to_start_on_an_inherited_http_socket_beyond_loopback(tmp_path, sock_dir) -> None:
    config = ServeConfig(flags=(str(write_json(tmp_path / "flags.json", flags())),),
                         socket=str(sock_dir / "agent.sock"))
    with bound(socket.AF_INET, "0.0.0.0") as sock:
        with pytest.raises(ConfigError, match="not a loopback address"):
            await run_agent(config, handle_signals=False, notifier=_SilentNotifier(),
                            inherited=[InheritedSocket(sock, "http", 3)])
        # Refused before anything was bound.
        assert not (sock_dir / "agent.sock").exists()
        allowed = ServeConfig(flags=config.flags, http_allow_remote=True)
        assert check_inherited_http(allowed, [InheritedSocket(sock, "http", 3)]) == [f"0.0.0.0:{sock.getsockname()[1]}"]


async def test_only_http_sockets_and_no_socket_option_is_refused_naming_the_ndjson_socket(tmp_path) -> None:
    config = ServeConfig(flags=(str(write_json(tmp_path / "flags.json", flags())),))
    with bound(socket.AF_INET, "127.0.0.1", listen=True) as sock:
        with pytest.raises(ListenerError, match="only HTTP sockets .* flagsock.socket or --socket"):
            await run_agent(config, handle_signals=False, notifier=_SilentNotifier(),
                            inherited=[InheritedSocket(sock, "http", 3)])


async def test_inherited_http_sockets_are_served_beside_a_bound_ndjson_socket_and_left_open_to_systemd(
        nursery, tmp_path, sock_dir) -> None:
    config = ServeConfig(flags=(str(write_json(tmp_path / "flags.json", flags())),),
                         socket=str(sock_dir / "agent.sock"), http_max_body_bytes=64)
    tcp = bound(socket.AF_INET, "127.0.0.1", listen=True)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(sock_dir / "http.sock"))
    unix.listen()
    inherited = [InheritedSocket(tcp, "http", 3), InheritedSocket(unix, "http", 4)]
    running = await nursery.start(functools.partial(run_agent, config, handle_signals=False,
                                                    notifier=_SilentNotifier(), inherited=inherited))
    assert [listener.where for listener in running.http] == [
        f"127.0.0.1:{tcp.getsockname()[1]} (from systemd)", f"{sock_dir / 'http.sock'} (from systemd)"]
    for client in (await RawHttp.tcp(tcp.getsockname()[1]), await RawHttp.unix(str(sock_dir / "http.sock"))):
        async with client:
            answer = await client.request("POST", "/ofrep/v1/evaluate/flags/bool-flag", b"{}")
            assert answer.status == 200 and answer.json()["value"] is True
            # The limits of the settings hold on inherited sockets too.
            assert (await client.request("POST", "/ofrep/v1/evaluate/flags", b"{" + b" " * 100 + b"}")).status == 413
    async with await LineClient.connect(sock_dir / "agent.sock") as ndjson:
        assert (await ndjson.result({"op": "ping"}))["revision"] >= 1
    running.stop()
    with trio.fail_after(10):
        while (sock_dir / "agent.sock").exists():  # the socket the agent bound itself goes
            await trio.sleep(0.01)
    # systemd's Unix socket file stays where it was.
    assert (sock_dir / "http.sock").exists()
