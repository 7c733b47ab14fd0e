"""Hard to break: hostile bytes, crowds, clients that leave oddly, readers that stop reading."""

from __future__ import annotations

import json
import logging
import os
import resource
import socket

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import SEED, LineClient, write_json


@pytest.fixture
def seed_file(tmp_path):
    return write_json(tmp_path / "flags.json", SEED)


def _json_values():
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False), st.text(max_size=20),
    )
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


FIELDS = ["op", "id", "flag", "context", "type", "default", "definition", "enabled", "if_revision"]
OPS = ["ping", "health", "evaluate", "evaluate_all", "stats", "help", "nope", "set", "delete"]


def _requests():
    fields = st.dictionaries(st.sampled_from(FIELDS), _json_values(), max_size=5)
    with_op = st.builds(lambda f, op: {**f, "op": op}, fields, st.sampled_from(OPS))
    return st.one_of(fields, with_op)


def _line_payloads():
    return st.one_of(
        _requests().map(lambda r: json.dumps(r).encode()),
        st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")),
        _json_values().map(lambda v: json.dumps(v).encode()),
    )


def _blank(line: bytes) -> bool:
    body = line[:-1] if line.endswith(b"\r") else line
    return not body.strip(b" \t\r")


async def _exchange(path, lines: list[bytes]) -> list[dict]:
    """Send the lines in one write, then a ping as a marker; return the answers before it."""
    async with await LineClient.connect(path) as c:
        await c.send(b"".join(line + b"\n" for line in lines) + b'{"op":"ping","id":"MARK"}\n')
        answers = []
        while True:
            msg = await c.receive(timeout=10)
            assert msg is not None, "the agent closed the connection"
            if msg.get("id") == "MARK":
                return answers
            answers.append(msg)


async def test_any_lines_get_exactly_one_answer_each_and_no_traceback(start_agent, seed_file, caplog):
    """Property test over the live server: every non-blank line gets one answer, in order."""
    running = await start_agent([seed_file], read_only=True)
    caplog.set_level(logging.INFO, logger="flagsock")
    batches = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_line_payloads(), min_size=1, max_size=12))
    def collect(lines):
        batches.append(lines)

    collect()
    for lines in batches:
        answers = await _exchange(running.socket_path, lines)
        expected = [line for line in lines if not _blank(line)]
        assert len(answers) == len(expected), (lines, answers)
        for answer in answers:
            assert "ok" in answer and "event" not in answer
            if not answer["ok"]:
                assert answer["error"]["code"] and answer["error"]["message"]
    assert not [r for r in caplog.records if r.exc_info], "a client's mistake put a traceback in the log"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("payload", [
    b"[" * 300_000,
    b'{"op":"evaluate","flag":"dark_mode","context":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    b'{"op":"evaluate","flag":"dark_mode","default":' + b"9" * 5000 + b"}",
    b'{"op":"evaluate","flag":"dark_mode","default":1e999999}',
    b'{"op":"ping","id":"\xff\xfe"}',
    b'{"op":"ping\x00"}',
    b"\x00" * 1000,
    # A lone surrogate is valid JSON text but not Unicode: it must never reach MurmurHash3.
    b'{"op":"evaluate","flag":"new_checkout_flow","context":{"targetingKey":"\\ud800"}}',
    b'{"op":"evaluate_all","context":{"targetingKey":"x\\udfff","n":123456789012345678901234567890}}',
])
async def test_pathological_lines_are_answered_and_the_connection_survives(start_agent, seed_file, payload):
    running = await start_agent([seed_file])
    answers = await _exchange(running.socket_path, [payload])
    assert len(answers) == 1 and "ok" in answers[0]


async def test_a_thousand_simultaneous_connections_are_served(start_agent, seed_file):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    running = await start_agent([seed_file])
    clients = [await LineClient.connect(running.socket_path) for _ in range(1000)]
    try:
        async with trio.open_nursery() as nursery:
            for i, c in enumerate(clients):
                async def ask(c=c, i=i):
                    answer = await c.request({"op": "evaluate", "flag": "dark_mode", "id": i}, timeout=30)
                    assert answer["id"] == i and answer["result"]["value"] is True
                nursery.start_soon(ask)
        assert running.service.stats.connections_open == 1000
    finally:
        for c in clients:
            await c.aclose()


async def test_half_closed_client_gets_all_its_answers_then_eof(start_agent, seed_file):
    running = await start_agent([seed_file])
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(running.socket_path)
        s.sendall(b"ping\n" * 50)
        s.shutdown(socket.SHUT_WR)
        data = b""
        with trio.fail_after(5):
            while True:
                chunk = await trio.to_thread.run_sync(s.recv, 65536)
                if not chunk:
                    break
                data += chunk
    assert data.count(b'"ok":true') == 50


async def test_clients_vanishing_mid_answer_do_no_harm(start_agent, seed_file, caplog):
    caplog.set_level(logging.INFO, logger="flagsock")
    running = await start_agent([seed_file])
    for _ in range(20):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(running.socket_path)
            s.sendall(b'{"op":"evaluate_all"}\n' * 2000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    async with await LineClient.connect(running.socket_path) as c:
        assert (await c.request({"op": "ping"}))["ok"]
    with trio.fail_after(5):
        while running.service.stats.connections_open > 0:
            await trio.sleep(0.01)
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_client_that_stops_reading_is_disconnected_and_others_are_not_held_up(start_agent, seed_file):
    running = await start_agent([seed_file], send_timeout=0.5)
    stuck = socket.socket(socket.AF_UNIX)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(running.socket_path)
    stuck.setblocking(False)
    request = b'{"op":"evaluate_all"}\n'
    sent = 0
    try:
        with trio.fail_after(10):
            while True:
                try:
                    sent += stuck.send(request * 200)
                except BlockingIOError:  # the agent stopped reading us: it is blocked on our replies
                    break
                except OSError:
                    break
                await trio.sleep(0)
            # Meanwhile everyone else is served at once.
            async with await LineClient.connect(running.socket_path) as other:
                with trio.fail_after(0.4):
                    assert (await other.request({"op": "ping"}))["ok"]
            while running.service.stats.connections_open > 0:
                await trio.sleep(0.02)
    finally:
        stuck.close()
    assert sent > 0


async def test_a_subscriber_that_falls_behind_is_told_and_disconnected(start_agent, seed_file):
    running = await start_agent([seed_file], subscriber_queue=4, send_timeout=5)
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(running.socket_path)
    slow.sendall(b"subscribe\n")
    store = running.service.store
    with trio.fail_after(5):
        while store.subscriber_count == 0:
            await trio.sleep(0.01)
    big = "x" * 20_000
    with trio.fail_after(10):
        n = 0
        while store.subscriber_count:  # fill the socket buffer, then the queue
            store.record_failure(str(seed_file), f"{n} {big}")
            n += 1
            await trio.sleep(0)
    # The agent is not slowed: it answers others while the subscriber is full.
    async with await LineClient.connect(running.socket_path) as other:
        assert (await other.request({"op": "ping"}))["ok"]
    slow.setblocking(True)
    slow.settimeout(10)
    data = b""
    while chunk := await trio.to_thread.run_sync(slow.recv, 1 << 20):
        data += chunk
    slow.close()
    lines = [json.loads(line) for line in data.splitlines()]
    assert lines[0]["ok"] is True
    assert lines[-1]["event"] == "overflow" and "reconnect" in lines[-1]["message"]
    assert len(lines) < n + 2  # some events were dropped, not queued without bound


def _serve_as_nobody(flags: str, sock: str) -> None:
    """Child process: drop to nobody, then run the agent (fork, not exec: see test below)."""
    import trio as _trio

    from agent.config import ServeConfig
    from agent.daemon import run_agent
    from tests.conftest import _SilentNotifier

    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    config = ServeConfig(flags=(flags,), socket=sock, socket_mode=0o666)
    _trio.run(lambda: run_agent(config, handle_signals=True, notifier=_SilentNotifier(), inherited=[]))


def test_a_file_the_agent_may_not_read_keeps_the_last_good_flags(sock_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the agent as another user")
    import signal
    import time

    from tests.process import wait_for_socket

    # After dropping privileges the child can no longer read the interpreter's own library
    # (it may live under /root), so everything it needs is imported before the fork.
    import anyio._backends._trio  # noqa: F401  (watchfiles runs its thread through anyio)

    import agent.daemon  # noqa: F401
    import tests.conftest  # noqa: F401

    os.chown(sock_dir, 65534, 65534)  # tmp_path's parents are closed to other users
    flags = write_json(sock_dir / "flags.json", SEED)
    os.chmod(flags, 0o644)
    sock = str(sock_dir / "nobody.sock")
    pid = os.fork()
    if pid == 0:  # the interpreter may live where nobody cannot exec it, so fork instead
        try:
            _serve_as_nobody(str(flags), sock)
        finally:
            os._exit(0)
    try:
        wait_for_socket(sock)

        def ask(msg: dict) -> dict:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
                s.sendall(json.dumps(msg).encode() + b"\n")
                return json.loads(s.makefile().readline())

        assert ask({"op": "evaluate", "flag": "dark_mode"})["result"]["value"] is True
        doc = json.loads(flags.read_text())
        doc["flags"]["dark_mode"]["enabled"] = False
        write_json(flags, doc)
        os.chmod(flags, 0o600)  # root-owned, unreadable to nobody
        deadline = time.monotonic() + 5
        while (h := ask({"op": "health"})["result"])["last_error"] is None:
            assert time.monotonic() < deadline, h
            time.sleep(0.05)
        assert "permission denied" in h["last_error"]["message"]
        assert ask({"op": "evaluate", "flag": "dark_mode"})["result"]["value"] is True
        os.chmod(flags, 0o644)
        while ask({"op": "evaluate", "flag": "dark_mode"})["result"]["value"] is not False:
            assert time.monotonic() < deadline + 5
            time.sleep(0.05)
        assert ask({"op": "health"})["result"]["last_error"] is None
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
