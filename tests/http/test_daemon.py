"""``flagsock serve --http``: the daemon's wiring, the loopback rule (exit 2) and the shared cap."""

from __future__ import annotations

import pytest
import trio

from agent.config import ConfigError, build_config
from tests.helpers import write_json
from tests.process import flagsock

from .flags import flags
from .rawhttp import RawHttp


@pytest.mark.parametrize("address", ["0.0.0.0:8013", "[::]:8013", "192.0.2.1:8013"])
def test_a_host_that_is_not_loopback_is_refused_at_start_with_exit_2(tmp_path, address):
    path = write_json(tmp_path / "flags.json", flags())
    done = flagsock("serve", "--flags", str(path), "--socket", str(tmp_path / "a.sock"), "--http", address)
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--http-allow-remote" in done.stderr
    assert not (tmp_path / "a.sock").exists()


@pytest.mark.parametrize("address", ["nonsense", "unix:", "127.0.0.1:99999", "127.0.0.1:", ":8013", "::1:8013"])
def test_an_unparsable_address_is_refused_with_exit_2(tmp_path, address):
    path = write_json(tmp_path / "flags.json", flags())
    done = flagsock("serve", "--flags", str(path), "--socket", str(tmp_path / "a.sock"), "--http", address)
    assert done.returncode == 2 and "--http" in done.stderr


def test_allow_remote_lets_the_check_pass():
    # Checked through the config alone: nothing in the tests listens beyond loopback.
    config = build_config({}, {"flags": ("f",), "http": ("0.0.0.0:8013",), "http_allow_remote": True})
    assert config.http == ("0.0.0.0:8013",)
    with pytest.raises(ConfigError, match="not a loopback"):
        build_config({}, {"flags": ("f",), "http": ("0.0.0.0:8013",)})


@pytest.mark.parametrize("address", ["127.0.0.1:8013", "127.8.9.1:1", "[::1]:8013", "localhost:8013", "unix:/x.sock"])
def test_loopback_and_unix_addresses_pass(address):
    assert build_config({}, {"flags": ("f",), "http": (address,)}).http == (address,)


async def test_daemon_serves_http_on_tcp_and_unix_beside_ndjson(http_agent, tmp_path):
    served = await http_agent([write_json(tmp_path / "flags.json", flags())])
    for client in (await RawHttp.tcp(served.port), await RawHttp.unix(served.unix_path)):
        async with client:
            answer = await client.request("POST", "/ofrep/v1/evaluate/flags/bool-flag", b"{}")
            assert answer.status == 200 and answer.json()["value"] is True
            assert answer.headers["server"].startswith("flagsock/")


async def test_http_and_ndjson_share_the_connection_cap(http_agent, tmp_path):
    from tests.helpers import LineClient

    served = await http_agent([write_json(tmp_path / "flags.json", flags())], max_connections=2)
    ndjson = await LineClient.connect(served.running.socket_path)
    assert (await ndjson.result({"op": "ping"}))["revision"] >= 1
    http = await RawHttp.tcp(served.port)
    assert (await http.request("GET", "/healthz")).status == 200
    async with await RawHttp.unix(served.unix_path) as third:  # the third connection, whichever side
        answer = await third.response()
        assert answer.status == 503
    async with await LineClient.connect(served.running.socket_path) as fourth:
        assert (await fourth.receive())["error"]["code"] == "BUSY"
    await http.aclose()
    with trio.fail_after(5):
        while served.running.service.stats.connections_open > 1:
            await trio.sleep(0.01)
    async with await RawHttp.tcp(served.port) as again:
        assert (await again.request("GET", "/healthz")).status == 200
    await ndjson.aclose()


async def test_stopping_the_agent_removes_the_http_socket_file(http_agent, tmp_path):
    import os

    served = await http_agent([write_json(tmp_path / "flags.json", flags())])
    assert os.path.exists(served.unix_path)
    served.running.stop()
    with trio.fail_after(10):
        while os.path.exists(served.unix_path):
            await trio.sleep(0.01)


def _exchange(path: str, data: bytes, *, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection to the agent's HTTP socket; the first response head
    (b"" when the agent closed without one) and how long it took."""
    import socket
    import time

    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        started = time.monotonic()
        conn.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received.split(b"\r\n\r\n")[0], time.monotonic() - started


def test_http_limit_settings_take_effect_in_a_running_agent(tmp_path, sock_dir):
    """Each limit, set through the command line or the config file, answers well before its
    default would (16 KiB head, 1 MiB body, 10/30/75 s): the setting, not the default, acted."""
    import socket
    import time

    from tests.process import AgentProcess

    flag_file = write_json(tmp_path / "flags.json", flags())
    http = str(sock_dir / "http.sock")
    config = tmp_path / "flagsock.toml"
    config.write_text("http-max-body-bytes = 64\nhttp_idle_timeout = 0.5\n")
    ofrep = b"POST /ofrep/v1/evaluate/flags/bool-flag HTTP/1.1\r\nHost: x\r\n"
    with AgentProcess(["--config", str(config), "--flags", str(flag_file), "--socket", str(sock_dir / "a.sock"),
                       "--http", f"unix:{http}", "--http-max-header-bytes", "300", "--http-header-timeout", "0.5",
                       "--http-body-timeout", "0.5"]):
        small = ofrep + b"Content-Length: 2\r\n\r\n{}"
        assert _exchange(http, small)[0].startswith(b"HTTP/1.1 200 ")
        padded = ofrep + b"X-Pad: " + b"p" * 300 + b"\r\nContent-Length: 2\r\n\r\n{}"
        assert _exchange(http, padded)[0].startswith(b"HTTP/1.1 431 ")
        body = b'{"context": {"pad": "' + b"p" * 100 + b'"}}'
        assert _exchange(http, ofrep + b"Content-Length: %d\r\n\r\n" % len(body) + body)[0].startswith(b"HTTP/1.1 413 ")
        head, took = _exchange(http, ofrep)  # the head never ends
        assert head.startswith(b"HTTP/1.1 408 ") and took < 5, (head, took)
        head, took = _exchange(http, ofrep + b"Content-Length: 10\r\n\r\n{}")  # nor does the body
        assert head.startswith(b"HTTP/1.1 408 ") and took < 5, (head, took)
        with socket.socket(socket.AF_UNIX) as conn:  # kept alive, then idle: closed
            conn.settimeout(5)
            conn.connect(http)
            conn.sendall(small)
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            assert conn.recv(65536) == b""
            assert time.monotonic() - started < 5


@pytest.mark.parametrize(("setting", "value", "words"), [
    ("http_max_header_bytes", 0, "http-max-header-bytes must be greater than 0"),
    ("http_max_body_bytes", -1, "http-max-body-bytes must be greater than 0"),
    ("http_header_timeout", 0.0, "http-header-timeout must be greater than 0"),
    ("http_body_timeout", -2.5, "http-body-timeout must be greater than 0"),
    ("http_idle_timeout", float("nan"), "http-idle-timeout must be greater than 0"),
])
def test_http_limit_settings_must_be_positive(setting, value, words):
    with pytest.raises(ConfigError, match=words):
        build_config({}, {"flags": ("f",), setting: value})


@pytest.mark.parametrize("args", [
    ["--http-max-header-bytes", "0"],
    ["--http-max-body-bytes", "1.5"],
    ["--http-header-timeout", "0"],
    ["--http-body-timeout", "-1"],
    ["--http-idle-timeout", "nan"],
])
def test_bad_http_limit_options_exit_2_naming_the_option(tmp_path, args):
    path = write_json(tmp_path / "flags.json", flags())
    done = flagsock("serve", "--flags", str(path), "--socket", str(tmp_path / "a.sock"), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert args[0].lstrip("-") in done.stderr, done.stderr
    assert not (tmp_path / "a.sock").exists()


def test_http_limit_settings_in_a_config_file_are_type_checked(tmp_path):
    from agent.config import settings_from_toml

    config = tmp_path / "flagsock.toml"
    config.write_text('http-max-header-bytes = "16k"\n')
    with pytest.raises(ConfigError, match="http-max-header-bytes must be a whole number"):
        settings_from_toml(str(config))
    config.write_text("http-idle-timeout = 30\nhttp-max-body-bytes = 4096\n")
    assert settings_from_toml(str(config)) == {"http_idle_timeout": 30.0, "http_max_body_bytes": 4096}


def test_the_help_states_the_http_frontends_own_defaults():
    """The option help spells the defaults out (the CLI does not import the frontend to stay fast)."""
    import attrs

    from agent.cli.parser import build_parser
    from agent.frontends.http.limits import HttpLimits

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    helps = {action.dest: action.help for action in serve._actions}
    for name, option in (("max_header_bytes", "http_max_header_bytes"), ("max_body_bytes", "http_max_body_bytes"),
                         ("header_timeout", "http_header_timeout"), ("body_timeout", "http_body_timeout"),
                         ("idle_timeout", "http_idle_timeout")):
        default = getattr(attrs.fields(HttpLimits), name).default
        assert f"(default {default if isinstance(default, int) else f'{default:g}'})" in helps[option], option
