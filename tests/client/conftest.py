"""A real flagsock agent on a real socket, for the client and provider tests.

The ``agent`` fixture starts ``python -m agent serve --flags F --socket S`` as a subprocess, waits
until the socket answers ``ping``, and terminates it after the test. Tests may stop it, start it
again (same socket, same file) and rewrite its flag file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .hostile import Handler, HostilePeer

READY_DEADLINE_S = 15.0

FLAGS: dict[str, Any] = {
    "flags": {
        "dark_mode": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "experimental_search": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
        "banner": {
            "state": "ENABLED",
            "variants": {"hello": "Hello", "bye": "Bye"},
            "defaultVariant": "hello",
            "metadata": {"team": "web"},
        },
        "max_items": {"state": "ENABLED", "variants": {"few": 3, "many": 30}, "defaultVariant": "many"},
        "ratio": {"state": "ENABLED", "variants": {"low": 0.25, "high": 0.75}, "defaultVariant": "low"},
        "layout": {
            "state": "ENABLED",
            "variants": {"grid": {"columns": 3}, "list": {"columns": 1}},
            "defaultVariant": "grid",
        },
        "retired": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "vip": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["user_123", "user_456"]]}, "on", "off"]},
        },
    }
}


def ping(path: str, timeout: float = 0.5) -> bool:
    """Whether an agent answers ``ping`` on ``path`` right now."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b'{"op":"ping","id":1}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
        return json.loads(data).get("ok") is True
    except (OSError, ValueError):
        return False


def wait_for(condition: Callable[[], Any], deadline_s: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.005)


class Agent:
    """One agent subprocess serving ``flags_path`` on ``socket_path``."""

    def __init__(self, workdir: Path, socket_path: str, args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.flags_path = workdir / "flags.json"
        self.socket_path = socket_path
        self.log_path = workdir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_flags(self, doc: dict[str, Any]) -> None:
        """Replace the flag file atomically, as deploy tools do."""
        tmp = self.flags_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.flags_path)

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "serve", "--flags", str(self.flags_path), "--socket", self.socket_path, *self.args],
                cwd=self.workdir,  # so `-m agent` cannot pick up a stray package from the caller's directory
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        end = time.monotonic() + READY_DEADLINE_S
        while not ping(self.socket_path):
            if self.proc.poll() is not None:
                pytest.fail(f"agent exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > end:
                self.stop()
                pytest.fail(f"agent did not answer ping within {READY_DEADLINE_S}s:\n{self.log_path.read_text()}")
            time.sleep(0.01)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _short_socket_path(directory: Path) -> Iterator[str]:
    path = directory / "agent.sock"
    if len(str(path)) < 100:  # AF_UNIX paths are limited to 107 bytes
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="fs-") as short:
        yield os.path.join(short, "agent.sock")


def _running_agent(workdir: Path, socket_path: str, args: Sequence[str] = ()) -> Iterator[Agent]:
    a = Agent(workdir, socket_path, args)
    a.write_flags(FLAGS)
    a.start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[str]:
    yield from _short_socket_path(tmp_path)


@pytest.fixture
def peer(socket_path: str) -> Iterator[Callable[[Handler], HostilePeer]]:
    """Start a scripted peer in the agent's place: ``peer(handler)`` (see tests/client/hostile.py)."""
    peers: list[HostilePeer] = []

    def start(handler: Handler) -> HostilePeer:
        p = HostilePeer(socket_path, handler)
        peers.append(p)
        return p

    yield start
    for p in peers:
        p.close()


@pytest.fixture
def agent(tmp_path: Path, socket_path: str) -> Iterator[Agent]:
    """A running agent serving :data:`FLAGS`, this test's own: stop it, restart it, edit its flags."""
    yield from _running_agent(tmp_path, socket_path)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """A running agent serving :data:`FLAGS`, shared by the tests that only read from it.

    Starting an agent takes a second or two; tests that stop it or edit its flags use ``agent``.
    """
    workdir = tmp_path_factory.mktemp("served")
    for path in _short_socket_path(workdir):
        yield from _running_agent(workdir, path)


def edited(**flags: Any) -> dict[str, Any]:
    """:data:`FLAGS` with some flags replaced (or added)."""
    doc = json.loads(json.dumps(FLAGS))
    doc["flags"].update(flags)
    return doc


def boolean_flag(on: bool) -> dict[str, Any]:
    return {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on" if on else "off"}
