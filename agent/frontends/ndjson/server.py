"""The Unix-socket server: accept, read lines, answer in order, push events.

Each connection is one task. It reads whatever bytes arrived, answers every whole line in the
batch and sends the answers in one write, so pipelined requests cost one syscall per batch
rather than per request. A client that does not read is given ``send_timeout`` and then
disconnected; a subscriber that falls behind by ``subscriber_queue`` events likewise. Nothing a
client sends, and no way it can leave, reaches the log as a traceback or stops the server.

Reads and writes go straight to the socket and fall back to Trio's waiting (``wait_readable``,
the timed, locked ``send_all``) only when the kernel has nothing to read or no room to write:
per batch, a cancel scope, a deadline and a lock cost more than answering the request itself
(bench/RESULTS.md). Shutdown shuts the reading side of each socket, so a waiting read ends
as at end-of-file and a batch under way is finished and sent.
"""

from __future__ import annotations

import errno
import logging
import socket
from time import perf_counter
from types import MappingProxyType
from typing import Any

import orjson
import trio

from agent.frontends.ops import ASYNC_OPS, SYNC_OPS
from agent.store.peer import Peer, peer_of
from protocol import errors
from protocol.errors import BadRequest, ProtocolError
from protocol.framing import LINE_TOO_LONG, LineDecoder
from protocol.messages import NO_ID, decode_request, error_message, ok_message

log = logging.getLogger("flagsock.server")

RECEIVE_SIZE = 65536
_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def _default(obj: Any) -> Any:
    if isinstance(obj, MappingProxyType):
        return dict(obj)
    if isinstance(obj, (tuple, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


_OPTS = orjson.OPT_APPEND_NEWLINE


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line. Everything served is native to orjson: requests and flag files
    are decoded by orjson itself (integers past 64 bits arrive as floats)."""
    return orjson.dumps(message, default=_default, option=_OPTS)


def loads(line: bytes) -> Any:
    """orjson, strictly: it refuses what is not Unicode (a lone surrogate escape) and what is not
    JSON (``NaN``), which the stdlib would let through to the evaluator."""
    return orjson.loads(line)


def error_line(request_id: Any, code: str, message: str, details: dict | None = None) -> bytes:
    return encode(error_message(request_id, code, message, details))


class Connection:
    __slots__ = ("stream", "raw", "peer", "subscription", "send_lock", "number")

    def __init__(self, raw: socket.socket, peer: Peer, number: int) -> None:
        self.raw = raw
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        self.peer = peer
        self.subscription: Any = None
        self.send_lock = trio.StrictFIFOLock()
        self.number = number


class _Gone(Exception):
    """The client stopped reading or went away; close quietly."""


class Server:
    """Serves one listening socket for a service until :meth:`shutdown`.

    Args:
        service: what the ops see (store, reloader, writer, stats, access).
        sock: a bound, listening AF_UNIX stream socket (ours or systemd's).
    """

    def __init__(self, service: Any, sock: socket.socket, *, max_connections: int, max_line_bytes: int,
                 send_timeout: float) -> None:
        self.service = service
        self.sock = sock
        self.max_connections = max_connections
        self.max_line_bytes = max_line_bytes
        self.send_timeout = send_timeout
        self.closing = False
        self._connections: set[Connection] = set()
        self._accept_scope: trio.CancelScope | None = None
        self._all_closed = trio.Event()
        self._all_closed.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until shutdown; returns once every connection has ended."""
        self.sock.setblocking(False)
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as self._accept_scope:
                task_status.started()
                await self._accept_loop(nursery)

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        stats = self.service.stats
        sock = self.sock
        while not self.closing:
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_RETRY_ERRNOS:
                    log.warning("cannot accept a connection (%s); retrying in 100 ms", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            if stats.connections_open >= self.max_connections:
                stats.connections_refused += 1
                nursery.start_soon(self._refuse_busy, client)
                continue
            client.setblocking(False)
            stats.connections_open += 1
            stats.connections_total += 1
            nursery.start_soon(self._handle, client, stats.connections_total)

    async def _refuse_busy(self, client: socket.socket) -> None:
        client.setblocking(False)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
        with trio.move_on_after(1.0):
            try:
                await stream.send_all(error_line(
                    NO_ID, errors.BUSY,
                    f"the agent is serving its limit of {self.max_connections} connections; "
                    "retry shortly, or raise --max-connections",
                ))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        await _close(stream)

    def shutdown(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their current batch."""
        self.closing = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for conn in list(self._connections):
            # A waiting receive returns end-of-file; a batch under way finishes first.
            try:
                conn.raw.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def wait_connections_closed(self) -> None:
        await self._all_closed.wait()

    async def _handle(self, client: socket.socket, number: int) -> None:
        conn = Connection(client, peer_of(client), number)
        stream = conn.stream
        self._connections.add(conn)
        self._all_closed = trio.Event() if len(self._connections) == 1 else self._all_closed
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._read_loop(conn, nursery)
                except _Gone:
                    pass
                # A subscriber that half-closed keeps its events; anything else ends here.
                if conn.subscription is None or self.closing:
                    nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("connection %d (%s) failed unexpectedly", number, conn.peer.describe())
        finally:
            if conn.subscription is not None:
                self.service.store.unsubscribe(conn.subscription)
            self._connections.discard(conn)
            self.service.stats.connections_open -= 1
            await _close(stream)
            if not self._connections:
                self._all_closed.set()

    async def _read_loop(self, conn: Connection, nursery: trio.Nursery) -> None:
        decoder = LineDecoder(self.max_line_bytes)
        recv = conn.raw.recv
        pumping = False
        waited = False
        while not self.closing:
            # Read straight from the socket; wait only when nothing is there. A connection
            # whose bytes are always ready still yields once a batch, so none can starve others.
            try:
                data = recv(RECEIVE_SIZE)
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(conn.raw)
                except trio.ClosedResourceError:
                    raise _Gone from None
                waited = True
                continue
            except OSError:
                raise _Gone from None
            if not waited:
                await trio.lowlevel.checkpoint()
            waited = False
            if not data:
                return  # EOF (or shutdown() shut the reading side)
            out: list[bytes] = []
            for item in decoder.feed(data):
                if item is LINE_TOO_LONG:
                    out.append(error_line(
                        NO_ID, errors.LINE_TOO_LONG,
                        f"request line is longer than the limit of {self.max_line_bytes} bytes; "
                        "it was discarded",
                    ))
                    self.service.stats.requests["invalid"] += 1
                    continue
                answer = self._answer_sync(conn, item)
                if answer.__class__ is bytes:
                    out.append(answer)
                    continue
                # An async op (reload, set, delete): send what is ready first, then wait for it.
                if out:
                    await self._send(conn, b"".join(out))
                    out = []
                out.append(await self._answer_async(conn, *answer))
            if out:
                await self._send(conn, b"".join(out))
            if conn.subscription is not None and not pumping:
                pumping = True
                nursery.start_soon(self._pump_events, conn)

    def _answer_sync(self, conn: Connection, line: bytes) -> Any:
        """Answer a line if its op is synchronous; else return (op function, id, request)."""
        started, op = perf_counter(), None  # the latency histogram: a clock pair a request (bench/RESULTS.md)
        request_id = NO_ID
        stats = self.service.stats
        try:
            request = decode_request(line, loads)
            op = request["op"]
            request_id = request.get("id", NO_ID)
            fn = SYNC_OPS.get(op)
            if fn is None:
                afn = ASYNC_OPS.get(op)
                if afn is None:
                    stats.requests["unknown"] += 1
                    raise ProtocolError(
                        f"unknown op {op[:64]!r}; send \"help\" for the list of ops", code=errors.UNKNOWN_OP
                    )
                stats.requests[op] += 1
                return (afn, request_id, request)
            stats.requests[op] += 1
            return encode(ok_message(request_id, fn(self.service, conn, request)))
        except ProtocolError as exc:
            if exc.__class__ is BadRequest:
                stats.requests["invalid"] += 1
                request_id = getattr(exc, "request_id", request_id)
            return error_line(request_id, exc.code, exc.message, exc.details)
        except Exception:
            log.exception("internal error answering a request from %s", conn.peer.describe())
            return error_line(request_id, errors.INTERNAL, "internal error in the agent; it has been logged")
        finally:
            if op in SYNC_OPS:  # not an unknown op: no histogram for each name a client makes up
                stats.observe(op, perf_counter() - started)

    async def _answer_async(self, conn: Connection, fn: Any, request_id: Any, request: dict) -> bytes:
        started = perf_counter()
        try:
            result = await fn(self.service, conn, request)
        except ProtocolError as exc:
            return error_line(request_id, exc.code, exc.message, exc.details)
        except Exception:
            log.exception("internal error answering %s from %s", request.get("op"), conn.peer.describe())
            return error_line(request_id, errors.INTERNAL, "internal error in the agent; it has been logged")
        finally:
            self.service.stats.observe(request["op"], perf_counter() - started)
        return encode(ok_message(request_id, result))

    async def _send(self, conn: Connection, data: bytes) -> None:
        if not conn.send_lock.locked():
            # Fast path: no other send is under way on this connection, so writing straight
            # away keeps the order; usually the kernel takes it all and no timer is needed.
            try:
                sent = conn.raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                raise _Gone from None
            if sent == len(data):
                return
            data = data[sent:]
        with trio.move_on_after(self.send_timeout) as scope:
            async with conn.send_lock:
                try:
                    await conn.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    raise _Gone from None
        if scope.cancelled_caught:
            log.info("connection %d (%s) stopped reading for %.0f s; disconnected",
                     conn.number, conn.peer.describe(), self.send_timeout)
            raise _Gone

    async def _pump_events(self, conn: Connection) -> None:
        sub = conn.subscription
        try:
            async for event in sub.receive:
                await self._send(conn, encode(event))
            if sub.overflowed:
                log.info("subscriber %d (%s) fell behind by more than its queue; disconnected",
                         conn.number, conn.peer.describe())
                await self._send(conn, encode({
                    "event": "overflow",
                    "revision": self.service.store.snapshot.revision,
                    "message": "this subscriber did not read its events fast enough and is being "
                               "disconnected; reconnect, subscribe and re-read what you cache",
                }))
        except _Gone:
            pass
        # The subscription ended (overflow, shutdown or a lost client): so does the connection.
        await _close(conn.stream)


async def _close(stream: trio.SocketStream) -> None:
    try:
        with trio.CancelScope(shield=True):
            await stream.aclose()
    except Exception:
        pass
