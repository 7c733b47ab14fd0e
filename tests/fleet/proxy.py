"""A fault-injecting TCP proxy on loopback, for putting a misbehaving network between a client and etcd.

``proxy = await nursery.start(FaultProxy(target_port).serve)`` listens on 127.0.0.1 (``proxy.port``)
and forwards every connection to ``127.0.0.1:target_port``. Then, at any moment:

- ``proxy.cut()``: close every open connection (the client sees its stream end); new ones still pass;
- ``proxy.hang()``: keep accepting, but forward nothing more in either direction, on old and new
  connections alike (a store that hangs without closing);
- ``proxy.swallow_replies()``: forward requests, but nothing back (a write that lands and whose
  answer is lost);
- ``proxy.refuse()``: close the listening socket, so a new connection is refused; open ones are cut;
- ``proxy.pass_through()``: back to forwarding (and listening again on the same port after ``refuse``).
"""

from __future__ import annotations

import errno
import socket

import trio

CHUNK = 65536


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0  # accepted so far, for tests that want to see a reconnect
        self._flowing = trio.Event()
        self._flowing.set()
        self._replying = trio.Event()
        self._replying.set()
        self._listener: trio.SocketListener | None = None
        self._nursery: trio.Nursery | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._listening = trio.CancelScope()

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free loopback port and proxy until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._listen()
            task_status.started(self)
            await trio.sleep_forever()  # keeps the nursery open while refusing (no listener)

    async def _listen(self) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._listener = trio.SocketListener(sock)
        self._listening = trio.CancelScope()
        self._nursery.start_soon(self._accept_loop, self._listener, self._listening)

    async def _accept_loop(self, listener: trio.SocketListener, scope: trio.CancelScope) -> None:
        with scope:
            async with listener:
                while True:
                    client = await listener.accept()
                    self.connections += 1
                    self._nursery.start_soon(self._handle, client)

    async def _handle(self, client: trio.SocketStream) -> None:
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                async with client:
                    try:
                        upstream = await trio.open_tcp_stream(*self.target)
                    except OSError:
                        return
                    async with upstream, trio.open_nursery() as pumps:
                        pumps.start_soon(self._pump, client, upstream, pumps.cancel_scope, False)
                        pumps.start_soon(self._pump, upstream, client, pumps.cancel_scope, True)
        finally:
            self._scopes.discard(scope)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope,
                    reply: bool) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await source.receive_some(CHUNK)
                await self._flowing.wait()
                if reply:
                    await self._replying.wait()
                if not data:
                    break
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        both.cancel()

    def cut(self) -> None:
        """Close every open connection now."""
        for scope in list(self._scopes):
            scope.cancel()

    def hang(self) -> None:
        """Stop forwarding bytes (connections stay open, new ones are accepted)."""
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def swallow_replies(self) -> None:
        """Forward what clients send; hold back everything the server answers."""
        if self._replying.is_set():
            self._replying = trio.Event()

    def refuse(self) -> None:
        """Stop listening (connects are refused) and cut the open connections."""
        self._listening.cancel()
        self.cut()

    async def pass_through(self) -> None:
        """Forward again; listen again on the same port if ``refuse`` had closed it."""
        self._flowing.set()
        self._replying.set()
        if self._listening.cancel_called:
            for _ in range(50):
                try:
                    await self._listen()
                    return
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    await trio.sleep(0.02)
            raise RuntimeError(f"fault proxy could not listen on port {self.port} again")
