"""One HTTP connection's socket I/O and the bytes of a response.

Reads and writes go straight to the socket and wait through Trio only when the kernel has
nothing to read or no room to write, as the NDJSON server does: per request, a cancel scope
and a lock cost more than answering it (bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import socket
import time
from email.utils import formatdate
from typing import Any

import h11
import trio

from .routing import Response

log = logging.getLogger("flagsock.http")

RECEIVE_SIZE = 65536
REASONS = {
    200: b"OK", 304: b"Not Modified", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 501: b"Not Implemented", 503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


class Gone(Exception):
    """The client went away or stopped reading; close quietly."""


class Conn:
    """One accepted socket: the raw socket for the fast path, a Trio stream for waiting.

    Resource handling: :meth:`aclose` closes the socket; the server calls it exactly once.
    """

    __slots__ = ("raw", "stream", "peer", "number", "busy", "scope", "send_timeout", "waited", "pending")

    def __init__(self, raw: socket.socket, peer: Any, number: int, send_timeout: float) -> None:
        self.raw = raw
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        self.peer = peer
        self.number = number
        self.send_timeout = send_timeout
        #: A request is being answered (shutdown lets it finish).
        self.busy = False
        #: The cancel scope of a stream response under way (shutdown cancels it).
        self.scope: trio.CancelScope | None = None
        #: This request waited for the socket, so its answer need not yield again.
        self.waited = False
        #: Answers to pipelined requests, sent together before the next wait for input.
        self.pending: list[bytes] = []

    def describe(self) -> str:
        return self.peer.describe() if self.peer is not None else "an unknown peer"

    async def receive(self, h: h11.Connection, deadline: float) -> bool | None:
        """Feed what arrives to h11 (b"" at end of file); None when the deadline passed first."""
        raw = self.raw
        while True:
            try:
                data = raw.recv(RECEIVE_SIZE)
            except BlockingIOError:
                with trio.move_on_at(deadline) as scope:
                    try:
                        await trio.lowlevel.wait_readable(raw)
                    except trio.ClosedResourceError:
                        raise Gone from None
                if scope.cancelled_caught:
                    return None
                self.waited = True
                continue
            except OSError:
                raise Gone from None
            h.receive_data(data)
            return True

    async def queue(self, data: bytes) -> None:
        """Send ``data`` with the next write (at the latest before the connection waits for input)."""
        self.pending.append(data)
        if len(self.pending) >= 64:
            await self.send(b"")

    async def send(self, data: bytes) -> None:
        """Send what is queued and ``data``; Gone when the client is gone or has not read for ``send_timeout``."""
        if self.pending:
            self.pending.append(data)
            data = b"".join(self.pending)
            self.pending.clear()
            if not data:
                return
        try:
            sent = self.raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            raise Gone from None
        if sent == len(data):
            if not self.waited:
                await trio.lowlevel.checkpoint()  # a client whose bytes are always ready still yields
            self.waited = False
            return
        with trio.move_on_after(self.send_timeout) as scope:
            try:
                await self.stream.send_all(data[sent:])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise Gone from None
        if scope.cancelled_caught:
            log.info("HTTP connection %d (%s) stopped reading for %.0f s; disconnected",
                     self.number, self.describe(), self.send_timeout)
            raise Gone

    async def drain_and_close(self, seconds: float) -> None:
        """Half-close and read what the client still sends (at most 1 MiB, ``seconds``), so an
        answer sent before its request was read is not lost to a reset."""
        try:
            self.raw.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = trio.current_time() + seconds
        drained = 0
        while drained < (1 << 20):
            try:
                data = self.raw.recv(RECEIVE_SIZE)
            except BlockingIOError:
                with trio.move_on_at(deadline) as scope:
                    await trio.lowlevel.wait_readable(self.raw)
                if scope.cancelled_caught:
                    return
                continue
            except OSError:
                return
            if not data:
                return
            drained += len(data)

    async def aclose(self) -> None:
        try:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
        except Exception:
            pass


class Sink:
    """A stream response's writer: body chunks through h11, out with the connection's timed send."""

    def __init__(self, conn: Conn, h: h11.Connection) -> None:
        self._conn, self._h = conn, h

    async def send(self, data: bytes) -> None:
        await self._conn.send(self._h.send(h11.Data(data=data)))


def http_date() -> bytes:
    """The Date header's value, formatted once a second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


_date_cache: list[Any] = [0, b""]


_STATUS_LINES = {status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in REASONS.items()}


def render_response(response: Response, server_header: bytes, *, close: bool = False, head: bool = False) -> bytes:
    """The bytes of a whole response, without h11's writer (the request side is h11's).

    The hot path: h11 parses every request, and the server asks it whether the connection stays
    open, but a fresh h11 connection per request (fed what is already buffered) spares its
    send-side state machine, half of its cost per request (bench/RESULTS.md, HTTP). Everything
    here comes from the agent's own code, never from a request; a header with CR or LF is a bug.
    """
    status = response.status
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
    out = [line, b"date: ", http_date(), b"\r\nserver: ", server_header, b"\r\n"]
    if response.content_type is not None:
        out += (b"content-type: ", response.content_type.encode(), b"\r\n")
    body = response.body
    if status != 304:
        out.append(b"content-length: %d\r\n" % len(body))
    for name, value in response.headers:
        text = f"{name}: {value}\r\n"
        if "\r" in text[:-2] or "\n" in text[:-2]:
            raise ValueError(f"header {name!r} holds a line break")
        out.append(text.encode("latin-1"))
    if close:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    if body and not head and status != 304:
        out.append(body)
    return b"".join(out)


def encode_response(h: h11.Connection, response: Response, server_header: bytes, *,
                    close: bool = False, head: bool = False) -> bytes:
    """The bytes of a whole response (no body for HEAD and 304, ``Connection: close`` if asked)."""
    headers = [(b"date", http_date()), (b"server", server_header)]
    if response.content_type is not None:
        headers.append((b"content-type", response.content_type.encode()))
    if response.status != 304:
        headers.append((b"content-length", str(len(response.body)).encode()))
    for name, value in response.headers:
        headers.append((name.encode(), value.encode()))
    if close:
        headers.append((b"connection", b"close"))
    out = h.send(h11.Response(status_code=response.status, headers=headers, reason=REASONS.get(response.status, b"")))
    if response.body and not head and response.status != 304:
        out += h.send(h11.Data(data=response.body))
    return out + h.send(h11.EndOfMessage())
