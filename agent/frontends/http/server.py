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
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import h11
import trio

from agent.store.peer import peer_of

from .connection import REASONS, Conn, Gone, Sink, encode_response, http_date, render_response
from .limits import ConnectionLimit, HttpLimits, TcpPeer
from .routing import Request, Response, Router, StreamResponse, error_response

log = logging.getLogger("flagsock.http")

_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ERROR_CODES = {408: "TIMEOUT", 413: "BODY_TOO_LARGE", 431: "HEADERS_TOO_LARGE", 501: "NOT_IMPLEMENTED",
                505: "HTTP_VERSION_NOT_SUPPORTED"}


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
        self._conns: set[Conn] = set()
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
        conn = Conn(client, None, 0, self.limits.send_timeout)
        try:
            h = h11.Connection(h11.SERVER)  # h11 lets a server answer before the request arrives
            response = error_response(503, "BUSY", "the agent is serving its limit of connections; retry shortly",
                                      (("retry-after", "1"),))
            with trio.move_on_after(1.0):
                await conn.send(encode_response(h, response, self.server_header, close=True))
                await conn.drain_and_close(0.5)
        except (Gone, h11.LocalProtocolError):
            pass
        finally:
            self._refusing -= 1
            await conn.aclose()

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
        conn = Conn(client, peer, number, self.limits.send_timeout)
        self._conns.add(conn)
        if len(self._conns) == 1:
            self._all_closed = trio.Event()
        try:
            await self._run(conn)
        except Gone:
            pass
        except Exception:
            self.counts["errors"] += 1
            log.exception("HTTP connection %d (%s) failed unexpectedly", number, conn.describe())
        finally:
            self._conns.discard(conn)
            self.connections.release()
            await conn.aclose()
            if not self._conns:
                self._all_closed.set()

    async def _run(self, conn: Conn) -> None:
        limits = self.limits
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        idle = False  # the first request's head is due within header_timeout of the accept
        while not self.closing:
            conn.busy = False
            deadline = trio.current_time() + (limits.idle_timeout if idle else limits.header_timeout)
            # The head of the next request.
            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:
                    return await self._refuse(conn, h, exc.error_status_hint, _describe_error(exc))
                if event is h11.NEED_DATA:
                    if conn.pending:
                        await conn.send(b"")
                    if await conn.receive(h, deadline) is None:  # deadline
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
                await conn.send(b"")  # what is queued, then the connection ends
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
            body = await read_body(conn, h, event, limits)
            if type(body) is not bytes:
                if body is not None:
                    await self._refuse(conn, h, *body)
                return
            if not await self._answer(conn, h, event, body):
                return
            # The next request gets a fresh h11 connection, fed what is already buffered (the
            # pipelined requests): the answer was written by render_response, not through h11.
            data, closed = h.trailing_data
            h = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
            idle = not data
            if data:
                h.receive_data(data)
            if closed:
                h.receive_data(b"")
        await conn.send(b"")  # the answers queued before shutdown

    async def _answer(self, conn: Conn, h: h11.Connection, event: h11.Request, body: bytes) -> bool:
        """Route and answer one request; False when the connection must end after it."""
        self.counts["requests"] += 1
        raw_path, query = split_target(event.target)
        method = event.method.decode("ascii", "replace")
        try:
            path = raw_path.decode("ascii")
            handler, params, refusal = self.router.resolve(method, path)
        except (UnicodeDecodeError, ValueError):
            handler, params, refusal = None, {}, error_response(400, "BAD_REQUEST", "the request path is not "
                                                                 "valid percent-encoded UTF-8")
        if refusal is not None:
            return await self._respond(conn, h, refusal, event)
        request = Request(method, path, query.decode("latin-1"), request_headers(event), body, conn.peer, params)
        try:
            result = handler(request)  # type: ignore[misc]
        except Exception:
            self.counts["errors"] += 1
            log.exception("internal error answering %s %s from %s", method, path[:200], conn.describe())
            result = error_response(500, "GENERAL", "internal error in the agent; it has been logged")
        if type(result) is StreamResponse:
            await run_stream(conn, h, result, event, self.server_header, closing=lambda: self.closing,
                             send_timeout=self.limits.send_timeout)
            return False
        return await self._respond(conn, h, result, event)

    async def _respond(self, conn: Conn, h: h11.Connection, response: Response, request: h11.Request) -> bool:
        # h11 read the whole request: DONE keeps the connection, MUST_CLOSE (HTTP/1.0,
        # "Connection: close") ends it after this answer.
        close = self.closing or h.their_state is not h11.DONE
        answer = render_response(response, self.server_header, close=close, head=request.method == b"HEAD")
        if close or not h.trailing_data[0]:
            await conn.send(answer)  # with the answers queued before it
        else:
            await conn.queue(answer)  # more requests are already here (pipelined): answer them together
        return not close

    async def _refuse(self, conn: Conn, h: h11.Connection, status: int, why: str) -> None:
        """Answer a request that cannot be served (when h11 still lets us) and end the connection."""
        self.counts["errors"] += 1
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            await conn.send(b"")  # the answers queued before this request
        else:
            code = _ERROR_CODES.get(status, "BAD_REQUEST")
            if status == 431:
                why = f"the request head is larger than the limit of {self.limits.max_header_bytes} bytes"
            try:
                data = encode_response(h, error_response(status, code, why), self.server_header, close=True)
            except h11.LocalProtocolError:
                return
            with trio.move_on_after(self.limits.send_timeout):
                await conn.send(data)
                await conn.drain_and_close(1.0)


async def read_body(conn: Conn, h: h11.Connection, request: h11.Request, limits: HttpLimits) -> bytes | tuple[int, str] | None:
    """The whole body; (status, why) when it must be refused; None when the client left mid-body."""
    for name, value in request.headers:
        if name == b"content-length" and int(value) > limits.max_body_bytes:
            return 413, f"the request body ({int(value)} bytes) is larger than the limit of {limits.max_body_bytes} bytes"
    if h.they_are_waiting_for_100_continue:
        await conn.send(h.send(h11.InformationalResponse(status_code=100, headers=[])))
    parts: list[bytes] = []
    size = 0
    deadline = trio.current_time() + limits.body_timeout
    while True:
        try:
            event = h.next_event()
        except h11.RemoteProtocolError as exc:
            return exc.error_status_hint, _describe_error(exc)
        if event is h11.NEED_DATA:
            if conn.pending:
                await conn.send(b"")
            if await conn.receive(h, deadline) is None:
                return 408, f"the request body did not arrive within {limits.body_timeout:g} s"
            continue
        kind = type(event)
        if kind is h11.Data:
            size += len(event.data)
            if size > limits.max_body_bytes:
                return 413, f"the request body is larger than the limit of {limits.max_body_bytes} bytes"
            parts.append(event.data)
        elif kind is h11.EndOfMessage:
            return b"".join(parts)
        else:  # ConnectionClosed in the middle of a body
            return None


async def run_stream(conn: Conn, h: h11.Connection, stream: StreamResponse, request: h11.Request,
                     server_header: bytes, *, closing: Callable[[], bool], send_timeout: float) -> None:
    """Send a stream response's head, run it, end it. Shutdown cancels ``conn.scope``, which is
    in place before the first byte goes out, so no stream can start after it."""
    headers = [(b"date", http_date()), (b"server", server_header),
               (b"content-type", stream.content_type.encode()), (b"cache-control", b"no-store")]
    headers += [(name.encode(), value.encode()) for name, value in stream.headers]
    with trio.CancelScope() as conn.scope:
        if closing():
            conn.scope.cancel()
        await conn.send(h.send(h11.Response(status_code=stream.status, headers=headers,
                                            reason=REASONS.get(stream.status, b""))))
        if request.method != b"HEAD":
            await stream.run(Sink(conn, h))
    conn.scope = None
    try:
        with trio.move_on_after(send_timeout):
            await conn.send(h.send(h11.EndOfMessage()))
    except (Gone, h11.LocalProtocolError):
        pass


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """The path and query of a request target (an absolute-form target keeps only its path)."""
    if target.startswith((b"http://", b"https://")):
        slash = target.find(b"/", target.find(b"//") + 2)
        target = target[slash:] if slash >= 0 else b"/"
    path, _, query = target.partition(b"?")
    return path, query


def request_headers(event: h11.Request) -> dict[str, str]:
    """Lower-cased names (h11 gives them so); a repeated field's values joined with ", "."""
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _describe_error(exc: h11.RemoteProtocolError) -> str:
    return f"malformed HTTP request: {exc}"


__all__ = ["HttpServer"]
