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
