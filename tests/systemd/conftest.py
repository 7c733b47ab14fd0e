"""Stand-ins for systemd's side of the conversation, shared by the systemd tests."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Message = dict[str, str]


def parse_notification(datagram: bytes) -> Message:
    """``b"READY=1\\nSTATUS=x"`` -> ``{"READY": "1", "STATUS": "x"}``."""
    fields = {}
    for line in datagram.decode().split("\n"):
        key, sep, value = line.partition("=")
        assert sep, f"notification line without '=': {line!r} in {datagram!r}"
        fields[key] = value
    return fields


class NotifyRecorder:
    """A datagram socket standing in for ``$NOTIFY_SOCKET``; keeps every message it gets.

    Args:
        env_value: what to put in ``NOTIFY_SOCKET`` (a path, or ``@name``).
        bind_address: the address to bind (the path, or ``b"\\0name"``).
    """

    def __init__(self, env_value: str, bind_address: str | bytes) -> None:
        self.env_value = env_value
        self.messages: list[Message] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(bind_address)

    def receive(self, timeout: float = 5.0) -> Message:
        """The next message, waiting at most ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            datagram = self.sock.recv(4096)
        except TimeoutError:
            raise AssertionError(
                f"no notification within {timeout}s; got so far: {self.messages}"
            ) from None
        message = parse_notification(datagram)
        self.messages.append(message)
        return message

    def wait_for(
        self,
        predicate: Callable[[Message], bool],
        *,
        timeout: float = 15.0,
        process: subprocess.Popen[bytes] | None = None,
        what: str = "the expected notification",
    ) -> Message:
        """Receive until a message satisfies ``predicate``; fail at the deadline.

        With ``process``, fail as soon as it exits instead of waiting out the deadline.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{what} did not arrive in {timeout}s; got: {self.messages}")
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"agent exited with {process.returncode} before {what}; got: {self.messages}"
                )
            self.sock.settimeout(min(remaining, 0.5))
            try:
                datagram = self.sock.recv(4096)
            except TimeoutError:
                continue
            message = parse_notification(datagram)
            self.messages.append(message)
            if predicate(message):
                return message

    def pending(self) -> list[Message]:
        """Every message already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(parse_notification(self.sock.recv(4096)))
        except BlockingIOError:
            pass
        self.messages.extend(out)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_recorder(tmp_path: Path) -> Iterator[NotifyRecorder]:
    """A recorder on a filesystem path under ``tmp_path``."""
    path = tmp_path / "notify.sock"
    recorder = NotifyRecorder(str(path), str(path))
    yield recorder
    recorder.close()


@pytest.fixture
def abstract_notify_recorder() -> Iterator[NotifyRecorder]:
    """A recorder on a unique abstract-namespace name (``@flagsock-test-...``)."""
    name = f"flagsock-test-{uuid.uuid4().hex}"
    recorder = NotifyRecorder(f"@{name}", b"\0" + name.encode())
    yield recorder
    recorder.close()
