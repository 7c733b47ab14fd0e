"""The CLI's side of the wire: one request, one answer, errors a person can act on.

Unlike ``protocol.client.FlagClient`` (which never raises, for applications), the CLI wants every
failure spelled out, so it speaks the protocol directly over the shared framing core.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

from protocol.client import DEFAULT_SOCKET
from protocol.framing import LINE_TOO_LONG, LineDecoder


class CliError(Exception):
    """Something the user must fix; ``exit_code`` says how the command ends."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


UNREACHABLE = 3


def socket_path(explicit: str | None) -> str:
    return explicit or os.environ.get("FLAGSOCK_SOCKET") or DEFAULT_SOCKET


def connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        raise CliError(f"no agent socket at {path}; is `flagsock serve` running? (set --socket or $FLAGSOCK_SOCKET)", UNREACHABLE) from None
    except ConnectionRefusedError:
        sock.close()
        raise CliError(f"nothing is listening on {path} (connection refused); start `flagsock serve`", UNREACHABLE) from None
    except PermissionError:
        sock.close()
        raise CliError(f"permission denied connecting to {path}; join the socket's group (see docs/operations.md)", UNREACHABLE) from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ETIMEDOUT or isinstance(exc, TimeoutError):
            raise CliError(f"timed out connecting to {path}", UNREACHABLE) from None
        raise CliError(f"cannot connect to {path}: {exc.strerror or exc}", UNREACHABLE) from None
    return sock


def _lines(sock: socket.socket, path: str) -> Iterator[dict[str, Any]]:
    decoder = LineDecoder(64 << 20)
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise CliError(f"the agent on {path} did not answer in time", UNREACHABLE) from None
        except OSError as exc:
            raise CliError(f"connection to {path} failed: {exc.strerror or exc}", UNREACHABLE) from None
        if not data:
            return
        for line in decoder.feed(data):
            if line is LINE_TOO_LONG:
                raise CliError("the agent sent a line too long to read")
            yield json.loads(line)


def request(path: str, message: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return its ``result``; an error answer raises CliError."""
    answer = exchange(path, message, timeout=timeout)
    if answer.get("ok"):
        return answer["result"]
    err = answer.get("error") or {}
    raise CliError(f"{err.get('code', 'ERROR')}: {err.get('message', 'no message')}")


def exchange(path: str, message: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return the whole answer, error or not (``explain`` wants both)."""
    with connect(path, timeout) as sock:
        sock.sendall(json.dumps(message).encode() + b"\n")
        for answer in _lines(sock, path):
            if "event" not in answer:
                return answer
    raise CliError(f"the agent on {path} closed the connection without answering", UNREACHABLE)


def events(path: str, *, timeout: float = 5.0) -> Iterator[dict[str, Any]]:
    """Subscribe and yield events until the agent goes away (raises CliError then)."""
    with connect(path, timeout) as sock:
        sock.sendall(b'{"op":"subscribe"}\n')
        lines = _lines(sock, path)
        first = next(lines, None)
        if first is None or not first.get("ok"):
            raise CliError(f"subscribe refused: {first}")
        sock.settimeout(None)
        yield {"event": "subscribed", "revision": first["result"]["revision"]}
        yield from lines
    raise CliError(f"the agent on {path} closed the connection", UNREACHABLE)
