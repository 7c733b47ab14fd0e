"""The stdlib client against a real agent: values, defaults, outages, threads, isolation."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from protocol import client as client_module
from protocol.client import EvaluationDetails, FlagClient, FlagsockError

from .conftest import Agent, wait_for


@pytest.fixture
def client(served: Agent):
    with FlagClient(served.socket_path, timeout=2.0) as c:
        yield c


def test_is_enabled_answers_boolean_flags(client: FlagClient) -> None:
    assert client.is_enabled("dark_mode") is True
    assert client.is_enabled("experimental_search", default=True) is False


def test_user_id_becomes_the_targeting_key(client: FlagClient) -> None:
    assert client.is_enabled("vip", user_id="user_123") is True
    assert client.is_enabled("vip", user_id="someone_else") is False
    assert client.is_enabled("vip", context={"targetingKey": "user_456"}) is True
    # user_id wins over a targetingKey in the context
    assert client.is_enabled("vip", user_id="nobody", context={"targetingKey": "user_456"}) is False


def test_evaluate_returns_typed_values_with_details(client: FlagClient) -> None:
    d = client.evaluate("banner", default="fallback", type="string")
    assert isinstance(d, EvaluationDetails)
    assert (d.flag_key, d.value, d.variant, d.reason, d.error_code) == ("banner", "Hello", "hello", "STATIC", None)
    assert d.metadata["team"] == "web"
    assert isinstance(d.revision, int)
    assert client.evaluate("max_items", type="integer").value == 30
    assert client.evaluate("ratio", type="float").value == 0.25
    assert client.evaluate("layout", type="object").value == {"columns": 3}
    assert client.evaluate("vip", {"targetingKey": "user_123"}).reason == "TARGETING_MATCH"


def test_details_are_frozen(client: FlagClient) -> None:
    d = client.evaluate("dark_mode")
    with pytest.raises(AttributeError):
        d.value = False  # type: ignore[misc]


def test_missing_flag_returns_the_default(client: FlagClient) -> None:
    d = client.evaluate("no_such_flag", default="fallback")
    assert (d.value, d.reason, d.error_code) == ("fallback", "ERROR", "FLAG_NOT_FOUND")
    assert d.error_message
    assert client.is_enabled("no_such_flag", default=True) is True


def test_wrong_type_returns_the_default(client: FlagClient) -> None:
    d = client.evaluate("banner", default=7, type="integer")
    assert (d.value, d.error_code) == (7, "TYPE_MISMATCH")
    assert client.is_enabled("banner", default=True) is True


def test_disabled_flag_returns_the_default(client: FlagClient) -> None:
    d = client.evaluate("retired", default="fallback")
    assert (d.value, d.variant, d.reason) == ("fallback", None, "DISABLED")


def test_unencodable_context_returns_the_default(client: FlagClient) -> None:
    d = client.evaluate("dark_mode", {"when": object()}, default=False)
    assert (d.value, d.error_code) == (False, "INVALID_CONTEXT")


def test_wrong_arguments_return_the_default_too(client: FlagClient) -> None:
    assert client.evaluate(["not", "a", "key"], default=3).value == 3  # type: ignore[arg-type]
    assert client.evaluate("dark_mode", ["not a context"], default=3).error_code == "INVALID_CONTEXT"  # type: ignore[arg-type]
    assert client.is_enabled("dark_mode", user_id="u", context="nope", default=True) is True  # type: ignore[arg-type]


def test_all_flags_maps_keys_to_values(client: FlagClient) -> None:
    flags = client.all_flags({"targetingKey": "user_123"})
    assert flags["dark_mode"] is True
    assert flags["vip"] is True
    assert flags["layout"] == {"columns": 3}
    assert "retired" not in flags  # no variant, so no value


def test_ping_and_health_report_the_agent(client: FlagClient) -> None:
    revision = client.ping()
    assert isinstance(revision, int)
    health = client.health()
    assert health["status"] == "ok"
    assert health["revision"] == revision


def test_ping_raises_when_the_agent_is_down(socket_path: str) -> None:
    with FlagClient(socket_path) as c:
        with pytest.raises(FlagsockError) as info:
            c.ping()
    assert info.value.code == "PROVIDER_NOT_READY"


def test_socket_path_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, served: Agent) -> None:
    monkeypatch.setenv("FLAGSOCK_SOCKET", served.socket_path)
    with FlagClient() as c:
        assert c.path == served.socket_path
        assert c.is_enabled("dark_mode") is True
    monkeypatch.delenv("FLAGSOCK_SOCKET")
    assert FlagClient().path == "/run/flagsock/flagsock.sock"


def test_down_agent_returns_defaults_promptly(socket_path: str) -> None:
    timeout = 0.5
    with FlagClient(socket_path, timeout=timeout) as c:
        started = time.perf_counter()
        d = c.evaluate("dark_mode", default="fallback")
        first = time.perf_counter() - started
        assert (d.value, d.reason, d.error_code) == ("fallback", "ERROR", "PROVIDER_NOT_READY")
        assert first < timeout

        # Within the backoff window a call does not even try to connect: it opens no socket.
        opened = []
        real_socket = socket.socket

        class CountingSocket(real_socket):
            def __init__(self, *args, **kwargs):
                opened.append(args)
                super().__init__(*args, **kwargs)

        socket.socket = CountingSocket
        try:
            for _ in range(50):
                assert c.is_enabled("dark_mode", default=True) is True
        finally:
            socket.socket = real_socket
        assert opened == []


def test_client_reconnects_after_agent_restart(agent: Agent) -> None:
    with FlagClient(agent.socket_path, timeout=1.0, max_backoff=0.2) as c:
        assert c.is_enabled("dark_mode") is True
        agent.stop()
        d = c.evaluate("dark_mode", default="fallback")
        assert (d.value, d.error_code) in {("fallback", "PROVIDER_NOT_READY"), ("fallback", "GENERAL")}
        agent.start()
        wait_for(lambda: c.evaluate("dark_mode").value is True, what="the client to reconnect")


def test_pooled_connection_broken_by_a_restart_is_retried_at_once(agent: Agent) -> None:
    with FlagClient(agent.socket_path, timeout=1.0) as c:
        assert c.is_enabled("dark_mode") is True  # leaves a pooled connection
        agent.stop()
        agent.start()
        # The pooled socket is dead; the one immediate retry on a fresh socket answers.
        assert c.evaluate("dark_mode").value is True


def test_many_threads_share_one_client(client: FlagClient) -> None:
    questions = [
        ("vip", {"targetingKey": f"user_{i}"}, i in (123, 456)) for i in range(100, 500)
    ] + [("dark_mode", {"targetingKey": f"u{i}"}, True) for i in range(400)]

    def ask(q: tuple[str, dict[str, str], bool]) -> bool:
        flag, ctx, want = q
        d = client.evaluate(flag, ctx, default=None, type="boolean")
        return d.value is want and d.error_code is None

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, questions * 3))
    assert all(answers)


def test_one_connection_serves_many_threads_in_turn(served: Agent) -> None:
    with FlagClient(served.socket_path, timeout=5.0, pool_size=1) as c:
        with ThreadPoolExecutor(max_workers=8) as pool:
            values = list(pool.map(lambda i: c.evaluate("max_items", type="integer").value, range(400)))
    assert values == [30] * 400


def test_client_module_needs_only_the_standard_library(served: Agent, tmp_path: Path) -> None:
    vendored = tmp_path / "vendored"
    vendored.mkdir()
    shutil.copy(client_module.__file__, vendored / "flagsock_client.py")
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(vendored)!r})
        from flagsock_client import FlagClient
        with FlagClient({served.socket_path!r}, timeout=2.0, cache=True) as c:
            out = {{
                "dark_mode": c.is_enabled("dark_mode"),
                "vip": c.is_enabled("vip", user_id="user_123"),
                "missing": c.evaluate("nope", default="d").value,
                "all": sorted(c.all_flags()),
            }}
        print(json.dumps(out))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("protocol", "agent", "attrs", "cattrs", "trio")))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=30, cwd=vendored
    )
    assert proc.returncode == 0, proc.stderr
    result, foreign = proc.stdout.splitlines()
    answers = json.loads(result)
    assert (answers["dark_mode"], answers["vip"], answers["missing"]) == (True, True, "d")
    assert {"dark_mode", "banner", "layout"} <= set(answers["all"])
    assert foreign == "[]"


def test_close_leaves_no_thread_behind(served: Agent) -> None:
    before = set(threading.enumerate())
    c = FlagClient(served.socket_path, cache=True)
    assert c.is_enabled("dark_mode") is True
    c.close()
    c.close()  # idempotent
    assert set(threading.enumerate()) - before == set()
    d = c.evaluate("dark_mode", default="closed")
    assert (d.value, d.error_code) == ("closed", "PROVIDER_NOT_READY")


def test_close_leaves_no_thread_behind_when_the_agent_is_down(socket_path: str) -> None:
    before = set(threading.enumerate())
    with FlagClient(socket_path, cache=True) as c:
        assert c.is_enabled("dark_mode", default=True) is True
    assert set(threading.enumerate()) - before == set()
