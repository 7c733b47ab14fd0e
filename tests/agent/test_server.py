"""The agent end to end over its socket: ops, envelopes, pipelining, hostile lines, limits."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
import trio

from tests.helpers import SEED, LineClient, write_json


@pytest.fixture
def seed_file(tmp_path):
    return write_json(tmp_path / "flags.json", SEED)


async def test_seed_flags_answer_as_described(start_agent, seed_file):
    running = await start_agent([seed_file])
    async with await LineClient.connect(running.socket_path) as c:
        dark = await c.result({"op": "evaluate", "flag": "dark_mode", "context": {"targetingKey": "anyone"}})
        assert (dark["value"], dark["variant"], dark["reason"]) == (True, "on", "STATIC")
        search = await c.result({"op": "evaluate", "flag": "experimental_search"})
        assert (search["value"], search["variant"], search["reason"]) == (False, "off", "STATIC")
        for user in ("user_123", "user_456"):
            got = await c.result({"op": "evaluate", "flag": "new_checkout_flow", "context": {"targetingKey": user}})
            assert got["value"] is True and got["reason"] == "TARGETING_MATCH"
        users = [f"u{i}" for i in range(2000)]
        on_25 = set()
        for u in users:
            got = await c.result({"op": "evaluate", "flag": "new_checkout_flow", "context": {"targetingKey": u}})
            if got["value"]:
                on_25.add(u)
        assert 0.20 < len(on_25) / len(users) < 0.30
        again = await c.result({"op": "evaluate", "flag": "new_checkout_flow", "context": {"targetingKey": users[7]}})
        assert again["value"] is (users[7] in on_25)

        doc = json.loads(seed_file.read_text())
        doc["flags"]["new_checkout_flow"]["rollout_percentage"] = 50
        write_json(seed_file, doc)
        assert (await c.result({"op": "reload"}))["changed"] is True
        on_50 = set()
        for u in users:
            got = await c.result({"op": "evaluate", "flag": "new_checkout_flow", "context": {"targetingKey": u}})
            if got["value"]:
                on_50.add(u)
        assert on_25 <= on_50
        assert 0.45 < len(on_50) / len(users) < 0.55


async def test_every_answer_echoes_the_id_only_when_the_request_had_one(start_agent, seed_file):
    running = await start_agent([seed_file])
    async with await LineClient.connect(running.socket_path) as c:
        assert "id" not in await c.request({"op": "ping"})
        for rid in (0, "abc", None, [1, {"x": 2}], 1.5):
            answer = await c.request({"op": "ping", "id": rid})
            assert answer["id"] == rid and answer["ok"] is True
        answer = await c.request({"op": "nope", "id": "e1"})
        assert answer == {"id": "e1", "ok": False, "error": answer["error"]}
        assert answer["error"]["code"] == "UNKNOWN_OP"


@pytest.mark.parametrize("word", ["ping", "health", "stats", "help"])
async def test_bare_words_can_be_typed(start_agent, seed_file, word):
    running = await start_agent([seed_file])
    async with await LineClient.connect(running.socket_path) as c:
        await c.send(word.encode() + b"\r\n")
        answer = await c.receive()
        assert answer["ok"] is True


HOSTILE = [
    (b"garbage that is not json", "BAD_REQUEST"),
    (b"[1,2,3]", "BAD_REQUEST"),
    (b'"a string"', "BAD_REQUEST"),
    (b"null", "BAD_REQUEST"),
    (b'{"op": 12}', "BAD_REQUEST"),
    (b'{"no_op": true}', "BAD_REQUEST"),
    (b'{"op": "evaluate"}', "BAD_REQUEST"),
    (b'{"op": "evaluate", "flag": 5}', "BAD_REQUEST"),
    (b'{"op": "evaluate", "flag": "dark_mode", "context": [1]}', "BAD_REQUEST"),
    (b'{"op": "evaluate", "flag": "dark_mode", "type": "bool"}', "BAD_REQUEST"),
    (b'{"op": "evaluate", "flag": "dark_mode", "contxt": {}}', "BAD_REQUEST"),
    (b'{"op": "evaluate_all", "context": "x"}', "BAD_REQUEST"),
    (b'{"op": "launch_missiles"}', "UNKNOWN_OP"),
    (b'{"op": "evaluate", "flag": "no_such_flag"}', "FLAG_NOT_FOUND"),
    (b'{"op": "evaluate", "flag": "dark_mode", "type": "string"}', "TYPE_MISMATCH"),
    (b"\xff\xfe\x00garbage", "BAD_REQUEST"),
    (b"[" * 200000, "BAD_REQUEST"),
    (b'{"op": "evaluate", "flag": "dark_mode", "default": 123456789012345678901234567890}', None),
]


async def test_hostile_lines_each_get_one_error_and_the_connection_keeps_working(start_agent, seed_file):
    running = await start_agent([seed_file])
    async with await LineClient.connect(running.socket_path) as c:
        for line, code in HOSTILE:
            await c.send(line + b"\n")
            answer = await c.receive()
            if code is None:
                assert answer["ok"] is True, (line[:60], answer)
            else:
                assert answer["ok"] is False and answer["error"]["code"] == code, (line[:60], answer)
                assert answer["error"]["message"]
            assert (await c.request({"op": "ping"}))["ok"] is True


async def test_a_too_long_line_is_refused_and_the_connection_survives(start_agent, seed_file):
    running = await start_agent([seed_file], max_line_bytes=1000)
    async with await LineClient.connect(running.socket_path) as c:
        await c.send(b'{"op":"ping","pad":"' + b"x" * 5000 + b'"}\n')
        answer = await c.receive()
        assert answer["error"]["code"] == "LINE_TOO_LONG"
        assert "1000" in answer["error"]["message"]
        assert (await c.request({"op": "ping", "id": 2}))["id"] == 2


async def test_pipelined_requests_come_back_in_order(start_agent, seed_file):
    running = await start_agent([seed_file])
    async with await LineClient.connect(running.socket_path) as c:
        ops = ["ping", "evaluate", "health", "evaluate_all", "bogus"]
        batch = b"".join(
            json.dumps({"op": ops[i % len(ops)], "id": i, "flag": "dark_mode"} if ops[i % len(ops)] == "evaluate"
                       else {"op": ops[i % len(ops)], "id": i}).encode() + b"\n"
            for i in range(200)
        )
        await c.send(batch)
        ids = [(await c.receive())["id"] for _ in range(200)]
        assert ids == list(range(200))


async def test_evaluate_all_answers_every_flag(start_agent, seed_file):
    running = await start_agent([seed_file])
    async with await LineClient.connect(running.socket_path) as c:
        result = await c.result({"op": "evaluate_all", "context": {"targetingKey": "user_123"}})
        assert result["revision"] == running.service.store.snapshot.revision
        assert result["flags"]["new_checkout_flow"]["value"] is True
        assert result["flags"]["experimental_search"]["value"] is False
        assert set(result["flags"]) == set(SEED["flags"])


async def test_health_stats_and_help_describe_the_agent(start_agent, seed_file):
    running = await start_agent([seed_file])
    async with await LineClient.connect(running.socket_path) as c:
        health = await c.result({"op": "health"})
        assert health["status"] == "ok" and health["flag_count"] == 3 and health["last_error"] is None
        assert health["sources"][0]["path"] == str(seed_file)
        assert set(health) >= {"status", "revision", "flag_count", "sources", "loaded_at", "last_error", "uptime_s", "version"}
        await c.result({"op": "evaluate", "flag": "dark_mode"})
        stats = await c.result({"op": "stats"})
        assert stats["requests"]["evaluate"] == 1 and stats["evaluations"] == {"dark_mode": 1}
        assert stats["connections"]["open"] == 1
        assert set(stats["reloads"]) == {"ok", "failed"}
        ops = (await c.result({"op": "help"}))["ops"]
        assert {"ping", "health", "evaluate", "evaluate_all", "set", "delete", "subscribe", "reload", "stats", "help"} <= set(ops)


async def test_socket_is_created_0660_by_default_and_mode_is_configurable(start_agent, seed_file, sock_dir):
    running = await start_agent([seed_file])
    assert stat.S_IMODE(os.stat(running.socket_path).st_mode) == 0o660
    other = await start_agent([seed_file], socket=str(sock_dir / "b.sock"), socket_mode=0o600)
    assert stat.S_IMODE(os.stat(other.socket_path).st_mode) == 0o600


async def test_a_stale_socket_file_is_replaced_but_a_live_one_is_not(start_agent, seed_file, sock_dir):
    from agent.host.listener import ListenerError

    stale = sock_dir / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # the file stays, nothing listens
    running = await start_agent([seed_file], socket=str(stale))
    async with await LineClient.connect(stale) as c:
        assert (await c.request({"op": "ping"}))["ok"]
    with pytest.raises(ListenerError, match="already serving"):
        await start_agent([seed_file], socket=running.socket_path)
    regular = sock_dir / "file.sock"
    regular.write_text("not a socket")
    with pytest.raises(ListenerError, match="not a socket"):
        await start_agent([seed_file], socket=str(regular))


async def test_past_max_connections_a_client_gets_busy_and_is_closed(start_agent, seed_file):
    running = await start_agent([seed_file], max_connections=3)
    held = [await LineClient.connect(running.socket_path) for _ in range(3)]
    for c in held:
        assert (await c.request({"op": "ping"}))["ok"]
    extra = await LineClient.connect(running.socket_path)
    answer = await extra.receive()
    assert answer["ok"] is False and answer["error"]["code"] == "BUSY"
    assert await extra.receive() is None  # closed
    await held[0].aclose()
    with trio.fail_after(5):
        while running.service.stats.connections_open > 2:
            await trio.sleep(0.01)
    again = await LineClient.connect(running.socket_path)
    assert (await again.request({"op": "ping"}))["ok"]
    for c in [*held[1:], again, extra]:
        await c.aclose()


async def test_stop_closes_idle_connections_promptly_and_removes_the_socket(nursery, sock_dir, seed_file):

    from agent.config import ServeConfig
    from agent.daemon import run_agent
    from tests.conftest import _SilentNotifier

    config = ServeConfig(flags=(str(seed_file),), socket=str(sock_dir / "s.sock"), shutdown_timeout=5)
    done = trio.Event()

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        await run_agent(config, task_status=task_status, handle_signals=False, notifier=_SilentNotifier(), inherited=[])
        done.set()

    running = await nursery.start(serve)
    idle = [await LineClient.connect(running.socket_path) for _ in range(5)]
    with trio.fail_after(2):  # well under shutdown_timeout: idle clients do not hold it up
        running.stop()
        await done.wait()
    for c in idle:
        assert await c.receive() is None
        await c.aclose()
    assert not os.path.exists(config.socket)
