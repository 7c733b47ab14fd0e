"""The HTTP/1.1 server: h11 speaks the protocol, Trio does the I/O, one task per connection.

Each connection runs h11's loop: feed the bytes that arrived, take events with ``next_event()``
until it says ``NEED_DATA``, answer a whole request, ``start_next_cycle()`` for the next one.
Requests that arrive pipelined are answered in order and their answers leave in one write.

Every wait has a deadline (:class:`HttpLimits`): the head of a request must arrive within
``header_timeout`` (408, or a quiet close if nothing came), its body within ``body_timeout``,
the next request of a kept-alive connection within ``idle_timeout``, and a client that stops
reading its answers is dropped after ``send_timeout``. Heads past ``max_header_bytes`` get 431,
bodies past ``max_body_bytes`` 413, anything h11 refuses the status it hints (400 mostly); each
such answer closes the connection. Nothing a client sends reaches the log as a traceback.

Sockets are read and written directly and wait through Trio only when the kernel has nothing
to read or no room to write, as the NDJSON server does (bench/RESULTS.md).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from email.utils import formatdate
from typing import Any

import attrs
import h11
import trio

from agent.store.peer import peer_of

from .routing import JSON, Request, Response, Router, StreamResponse, error_response

log = logging.getLogger("flagsock.http")

RECEIVE_SIZE = 65536
_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_REASONS = {
    200: b"OK", 304: b"Not Modified", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 413: b"Content Too Large", 414: b"URI Too Long", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 501: b"Not Implemented", 503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


@attrs.frozen
class HttpLimits:
    """How much a client may send and how long it may take (seconds, bytes)."""

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1 << 20
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    send_timeout: float = 10.0
    #: Connections past the cap are answered 503 by at most this many tasks at once; the rest are closed.
    max_refusing: int = 64


class ConnectionLimit:
    """A connection cap of ``limit`` (the daemon may hand in one shared with the NDJSON server)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def try_acquire(self, peer: Any) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class SharedConnectionLimit:
    """The NDJSON server's cap, shared: both count against ``stats.connections_open``.

    Args:
        stats: the agent's counters (``connections_open``, ``connections_total``, ``connections_refused``).
        limit: ``--max-connections``.
    """

    def __init__(self, stats: Any, limit: int) -> None:
        self.stats = stats
        self.limit = limit

    def try_acquire(self, peer: Any) -> bool:
        stats = self.stats
        if stats.connections_open >= self.limit:
            stats.connections_refused += 1
            return False
        stats.connections_open += 1
        stats.connections_total += 1
        return True

    def release(self) -> None:
        self.stats.connections_open -= 1


@attrs.frozen
class TcpPeer:
    host: str
    port: int

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


class _Gone(Exception):
    """The client went away or stopped reading; close quietly."""


class _Sink:
    """A stream response's writer: the connection's timed send."""

    def __init__(self, server: HttpServer, conn: _Conn, h: h11.Connection) -> None:
        self._server, self._conn, self._h = server, conn, h

    async def send(self, data: bytes) -> None:
        await self._server._send(self._conn, self._h.send(h11.Data(data=data)))


class _Conn:
    __slots__ = ("raw", "stream", "peer", "number", "busy", "scope")

    def __init__(self, raw: socket.socket, peer: Any, number: int) -> None:
        self.raw = raw
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        self.peer = peer
        self.number = number
        self.busy = False
        self.scope: trio.CancelScope | None = None


def _http_date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


_date_cache: list[Any] = [0, b""]


class HttpServer:
    """Serves one listening socket (Unix or TCP) with ``router`` until :meth:`shutdown`.

    Args:
        router: method + path to handler.
        sock: a bound, listening stream socket.
        limits: sizes and deadlines (:class:`HttpLimits`).
        connections: the cap, an object with ``try_acquire(peer) -> bool`` and ``release()``.
        server_header: the ``Server`` header value.
    """

    def __init__(self, router: Router, sock: socket.socket, *, limits: HttpLimits = HttpLimits(),
                 connections: Any = None, server_header: str = "flagsock") -> None:
        self.router = router
        self.sock = sock
        self.limits = limits
        self.connections = connections if connections is not None else ConnectionLimit(1024)
        self.server_header = server_header.encode()
        self.closing = False
        self.counts: dict[str, int] = {"requests": 0, "connections": 0, "refused": 0, "errors": 0}
        self._conns: set[_Conn] = set()
        self._refusing = 0
        self._accept_scope: trio.CancelScope | None = None
        self._all_closed = trio.Event()
        self._all_closed.set()
        self._unix = sock.family == socket.AF_UNIX

    # -- accepting ---------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until :meth:`shutdown`; returns once every connection has ended.

        Calls ``task_status.started()`` once the socket is being accepted on.
        """
        self.sock.setblocking(False)
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as self._accept_scope:
                task_status.started()
                await self._accept_loop(nursery)

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        sock = self.sock
        while not self.closing:
            try:
                client, address = sock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_RETRY_ERRNOS:
                    log.warning("cannot accept an HTTP connection (%s); retrying in 100 ms", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            client.setblocking(False)
            if self._unix:
                peer: Any = peer_of(client)
            else:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                peer = TcpPeer(address[0], address[1])
            if not self.connections.try_acquire(peer):
                self.counts["refused"] += 1
                if self._refusing < self.limits.max_refusing:
                    nursery.start_soon(self._refuse_busy, client)
                else:
                    client.close()
                continue
            self.counts["connections"] += 1
            nursery.start_soon(self._handle, client, peer, self.counts["connections"])

    async def _refuse_busy(self, client: socket.socket) -> None:
        self._refusing += 1
        conn = _Conn(client, None, 0)
        try:
            h = h11.Connection(h11.SERVER)  # h11 lets a server answer before the request arrives
            response = error_response(503, "BUSY", "the agent is serving its limit of connections; retry shortly",
                                      (("retry-after", "1"),))
            with trio.move_on_after(1.0):
                await self._send(conn, self._encode(h, response, close=True))
                await self._drain_and_close(conn, 0.5)
        except (_Gone, h11.LocalProtocolError):
            pass
        finally:
            self._refusing -= 1
            await _close(conn.stream)

    def shutdown(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their current answer,
        streams (SSE) end."""
        self.closing = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for conn in list(self._conns):
            if conn.scope is not None:
                conn.scope.cancel()
            elif not conn.busy:
                try:
                    conn.raw.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    async def wait_connections_closed(self) -> None:
        await self._all_closed.wait()

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, client: socket.socket, peer: Any, number: int) -> None:
        conn = _Conn(client, peer, number)
        self._conns.add(conn)
        if len(self._conns) == 1:
            self._all_closed = trio.Event()
        try:
            await self._run(conn)
        except _Gone:
            pass
        except Exception:
            self.counts["errors"] += 1
            log.exception("HTTP connection %d (%s) failed unexpectedly", number, _describe(peer))
        finally:
            self._conns.discard(conn)
            self.connections.release()
            await _close(conn.stream)
            if not self._conns:
                self._all_closed.set()

    async def _run(self, conn: _Conn) -> None:
        limits = self.limits
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        first = True
        while not self.closing:
            conn.busy = False
            idle = not first and not h.trailing_data[0]
            deadline = trio.current_time() + (limits.idle_timeout if idle else limits.header_timeout)
            first = False
            # The head of the next request.
            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:
                    return await self._refuse(conn, h, exc.error_status_hint, _describe_error(exc))
                if event is h11.NEED_DATA:
                    if await self._receive(conn, h, deadline) is None:  # deadline
                        if idle or not h.trailing_data[0]:
                            return  # nothing of a request came: close without a word
                        return await self._refuse(conn, h, 408, f"the request head did not arrive within "
                                                                f"{limits.header_timeout:g} s")
                    if idle:
                        idle = False
                        deadline = trio.current_time() + limits.header_timeout
                    continue
                break
            if type(event) is not h11.Request:
                return  # ConnectionClosed (or PAUSED, which cannot happen between cycles)
            conn.busy = True
            if event.http_version not in (b"1.1", b"1.0"):
                return await self._refuse(conn, h, 505, f"HTTP/{event.http_version.decode()} is not served; "
                                                        "speak HTTP/1.1")
            # h11 measures a head only while it is incomplete; one that arrived whole is measured here.
            size = len(event.method) + len(event.target) + 12
            for name, value in event.headers:
                size += len(name) + len(value) + 4
            if size > limits.max_header_bytes:
                return await self._refuse(conn, h, 431, "")
            body = await self._read_body(conn, h, event)
            if body is None:
                return
            keep = await self._answer(conn, h, event, body)
            if not keep or h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                return
            h.start_next_cycle()

    async def _read_body(self, conn: _Conn, h: h11.Connection, request: h11.Request) -> bytes | None:
        """The whole body, or None when the connection was answered (413, 408, 400) and must end."""
        limits = self.limits
        for name, value in request.headers:
            if name == b"content-length" and int(value) > limits.max_body_bytes:
                await self._refuse(conn, h, 413, f"the request body ({int(value)} bytes) is larger than the "
                                                 f"limit of {limits.max_body_bytes} bytes")
                return None
        if h.they_are_waiting_for_100_continue:
            await self._send(conn, h.send(h11.InformationalResponse(status_code=100, headers=[])))
        parts: list[bytes] = []
        size = 0
        deadline = trio.current_time() + limits.body_timeout
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(conn, h, exc.error_status_hint, _describe_error(exc))
                return None
            if event is h11.NEED_DATA:
                if await self._receive(conn, h, deadline) is None:
                    await self._refuse(conn, h, 408, f"the request body did not arrive within {limits.body_timeout:g} s")
                    return None
                continue
            kind = type(event)
            if kind is h11.Data:
                size += len(event.data)
                if size > limits.max_body_bytes:
                    await self._refuse(conn, h, 413, f"the request body is larger than the limit of "
                                                     f"{limits.max_body_bytes} bytes")
                    return None
                parts.append(event.data)
            elif kind is h11.EndOfMessage:
                return b"".join(parts)
            else:  # ConnectionClosed in the middle of a body
                return None

    async def _answer(self, conn: _Conn, h: h11.Connection, event: h11.Request, body: bytes) -> bool:
        """Route and answer one request; False when the connection must end after it."""
        self.counts["requests"] += 1
        target = event.target
        if target.startswith((b"http://", b"https://")):  # absolute form: keep the path
            slash = target.find(b"/", target.find(b"//") + 2)
            target = target[slash:] if slash >= 0 else b"/"
        raw_path, _, query = target.partition(b"?")
        method = event.method.decode("ascii", "replace")
        try:
            path = raw_path.decode("ascii")
            handler, params, refusal = self.router.resolve(method, path)
        except (UnicodeDecodeError, ValueError):
            handler, params, refusal = None, {}, error_response(400, "BAD_REQUEST", "the request path is not "
                                                                 "valid percent-encoded UTF-8")
        if refusal is not None:
            return await self._respond(conn, h, refusal, event)
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        request = Request(method, path, query.decode("latin-1"), headers, body, conn.peer, params)
        try:
            result = handler(request)  # type: ignore[misc]
        except Exception:
            self.counts["errors"] += 1
            log.exception("internal error answering %s %s from %s", method, path[:200], _describe(conn.peer))
            result = error_response(500, "GENERAL", "internal error in the agent; it has been logged")
        if type(result) is StreamResponse:
            await self._stream(conn, h, result, event)
            return False
        return await self._respond(conn, h, result, event)

    async def _respond(self, conn: _Conn, h: h11.Connection, response: Response, request: h11.Request) -> bool:
        close = self.closing
        await self._send(conn, self._encode(h, response, close=close, head=request.method == b"HEAD"))
        return not close

    def _encode(self, h: h11.Connection, response: Response, *, close: bool = False, head: bool = False) -> bytes:
        headers = [(b"date", _http_date()), (b"server", self.server_header)]
        if response.content_type is not None:
            headers.append((b"content-type", response.content_type.encode()))
        if response.status != 304:
            headers.append((b"content-length", str(len(response.body)).encode()))
        for name, value in response.headers:
            headers.append((name.encode(), value.encode()))
        if close:
            headers.append((b"connection", b"close"))
        out = h.send(h11.Response(status_code=response.status, headers=headers,
                                  reason=_REASONS.get(response.status, b"")))
        if response.body and not head and response.status != 304:
            out += h.send(h11.Data(data=response.body))
        return out + h.send(h11.EndOfMessage())

    async def _stream(self, conn: _Conn, h: h11.Connection, stream: StreamResponse, request: h11.Request) -> None:
        headers = [(b"date", _http_date()), (b"server", self.server_header),
                   (b"content-type", stream.content_type.encode()), (b"cache-control", b"no-store")]
        headers += [(name.encode(), value.encode()) for name, value in stream.headers]
        await self._send(conn, h.send(h11.Response(status_code=stream.status, headers=headers,
                                                   reason=_REASONS.get(stream.status, b""))))
        if request.method == b"HEAD":
            await self._send(conn, h.send(h11.EndOfMessage()))
            return
        with trio.CancelScope() as conn.scope:
            if self.closing:
                conn.scope.cancel()
            await stream.run(_Sink(self, conn, h))
        conn.scope = None
        try:
            with trio.move_on_after(self.limits.send_timeout):
                await self._send(conn, h.send(h11.EndOfMessage()))
        except (_Gone, h11.LocalProtocolError):
            pass

    async def _refuse(self, conn: _Conn, h: h11.Connection, status: int, why: str) -> None:
        """Answer a request that cannot be served (when h11 still lets us) and end the connection."""
        self.counts["errors"] += 1
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            code = {408: "TIMEOUT", 413: "BODY_TOO_LARGE", 431: "HEADERS_TOO_LARGE",
                    501: "NOT_IMPLEMENTED", 505: "HTTP_VERSION_NOT_SUPPORTED"}.get(status, "BAD_REQUEST")
            if status == 431:
                why = f"the request head is larger than the limit of {self.limits.max_header_bytes} bytes"
            try:
                data = self._encode(h, error_response(status, code, why), close=True)
            except h11.LocalProtocolError:
                return
            with trio.move_on_after(self.limits.send_timeout):
                await self._send(conn, data)
                await self._drain_and_close(conn, 1.0)

    async def _drain_and_close(self, conn: _Conn, seconds: float) -> None:
        """Half-close and read what the client still sends, so the answer is not lost to a reset."""
        try:
            conn.raw.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = trio.current_time() + seconds
        drained = 0
        while drained < (1 << 20):
            try:
                data = conn.raw.recv(RECEIVE_SIZE)
            except BlockingIOError:
                with trio.move_on_at(deadline) as scope:
                    await trio.lowlevel.wait_readable(conn.raw)
                if scope.cancelled_caught:
                    return
                continue
            except OSError:
                return
            if not data:
                return
            drained += len(data)

    # -- socket I/O --------------------------------------------------------------------------

    async def _receive(self, conn: _Conn, h: h11.Connection, deadline: float) -> bool | None:
        """Feed what arrives to h11 (b"" at end of file); None when the deadline passed first."""
        raw = conn.raw
        while True:
            try:
                data = raw.recv(RECEIVE_SIZE)
            except BlockingIOError:
                with trio.move_on_at(deadline) as scope:
                    try:
                        await trio.lowlevel.wait_readable(raw)
                    except trio.ClosedResourceError:
                        raise _Gone from None
                if scope.cancelled_caught:
                    return None
                continue
            except OSError:
                raise _Gone from None
            h.receive_data(data)
            return True

    async def _send(self, conn: _Conn, data: bytes) -> None:
        try:
            sent = conn.raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            raise _Gone from None
        if sent == len(data):
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(self.limits.send_timeout) as scope:
            try:
                await conn.stream.send_all(data[sent:])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise _Gone from None
        if scope.cancelled_caught:
            log.info("HTTP connection %d (%s) stopped reading for %.0f s; disconnected",
                     conn.number, _describe(conn.peer), self.limits.send_timeout)
            raise _Gone


def _describe(peer: Any) -> str:
    return peer.describe() if peer is not None else "an unknown peer"


def _describe_error(exc: h11.RemoteProtocolError) -> str:
    return f"malformed HTTP request: {exc}"


async def _close(stream: trio.SocketStream) -> None:
    try:
        with trio.CancelScope(shield=True):
            await stream.aclose()
    except Exception:
        pass


__all__ = ["HttpLimits", "HttpServer", "ConnectionLimit", "SharedConnectionLimit", "TcpPeer", "JSON"]
