"""A hostile or broken agent: a real Unix-socket server whose connections a test scripts.

Each accepted connection runs ``handler(link)`` in a thread of its own; the :class:`Link` reads
requests and sends whatever the test wants (an endless line, a byte at a time, garbage, a BUSY
refusal and a close), counting what it managed to send, so a test can tell how much the client
was willing to read. :meth:`HostilePeer.close` stops every thread.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

# A peer's sockets give up after this long, so that a test that goes wrong cannot hang.
PEER_SOCKET_TIMEOUT_S = 20.0
_MAX_REQUEST_BYTES = 64 << 20

Handler = Callable[["Link"], None]


class Link:
    """One accepted connection, as the peer's handler sees it."""

    def __init__(self, sock: socket.socket, peer: HostilePeer) -> None:
        self.sock = sock
        self.peer = peer
        self.sent = 0
        self._buf = b""

    def request(self) -> dict[str, Any] | None:
        """The next request line, decoded; None when the client closed (or broke) the connection."""
        while b"\n" not in self._buf:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data or len(self._buf) > _MAX_REQUEST_BYTES:
                return None
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        req = json.loads(line)
        self.peer.requests.append(req)
        return req

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the client is gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        self.sent += len(data)
        return True

    def flood(self, chunk: bytes, total: int) -> None:
        """Send ``chunk`` again and again, up to ``total`` bytes or until the client is gone."""
        while self.sent < total and not self.peer.stopping.is_set():
            if not self.send(chunk):
                return

    def trickle(self, pieces: Iterable[bytes], every: float) -> None:
        """Send one piece every ``every`` seconds until the client is gone or the peer stops."""
        for piece in pieces:
            if not self.send(piece) or self.peer.stopping.wait(every):
                return

    def hold(self) -> None:
        """Keep the connection open, reading nothing more, until the client closes it."""
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class HostilePeer:
    """A Unix-socket server at ``path`` that runs ``handler`` for each connection.

    Resource handling: :meth:`close` closes the listener and every connection and joins every
    thread.
    """

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.links: list[Link] = []
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(64)
        self._accepter = threading.Thread(target=self._accept, name="hostile-peer accept", daemon=True)
        self._accepter.start()

    @property
    def connections(self) -> int:
        return len(self.links)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.settimeout(PEER_SOCKET_TIMEOUT_S)
            link = Link(sock, self)
            self.links.append(link)
            thread = threading.Thread(target=self._serve, args=(link,), name="hostile-peer link", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, link: Link) -> None:
        try:
            self.handler(link)
        except (OSError, ValueError):
            pass
        finally:
            link.close()

    def close(self) -> None:
        self.stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._accepter.join(5)
        for link in list(self.links):
            link.close()
        for thread in self._threads:
            thread.join(5)
            assert not thread.is_alive(), "a hostile peer's connection thread did not stop"


def answer(request: dict[str, Any], result: dict[str, Any]) -> bytes:
    return json.dumps({"id": request.get("id"), "ok": True, "result": result}).encode() + b"\n"


def refusal(code: str, message: str, request: dict[str, Any] | None = None) -> bytes:
    msg: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if request is not None:
        msg["id"] = request.get("id")
    return json.dumps(msg).encode() + b"\n"


def nested(depth: int) -> str:
    """JSON text of arrays nested ``depth`` deep, innermost holding a 1."""
    return "[" * depth + "1" + "]" * depth


def answers(make: Callable[[dict[str, Any]], bytes | None]) -> Handler:
    """A handler that answers every request with ``make(request)`` (None: no answer)."""

    def handler(link: Link) -> None:
        while (req := link.request()) is not None:
            data = make(req)
            if data is not None and not link.send(data):
                return

    return handler
