"""A blocking client for the flagsock agent, in one standard-library-only module.

flagsock's agent answers newline-delimited JSON on a Unix socket (see the wire contract,
``WIRE.md``). This module is everything an application needs to ask it for flags::

    from flagsock_client import FlagClient

    flags = FlagClient()                      # $FLAGSOCK_SOCKET, else /run/flagsock/flagsock.sock
    if flags.is_enabled("new_checkout_flow", user_id="user_123"):
        ...
    details = flags.evaluate("banner_text", {"country": "NL"}, default="Hello", type="string")

Vendoring: this file imports nothing but the standard library (Python 3.11+) and nothing from
the rest of flagsock, so you may copy it into your own project under any name (for example
``yourapp/flagsock_client.py``) instead of installing the ``flagsock`` distribution. Keep this
docstring, which says which agent version it speaks to: wire contract v1.

What to expect:

* **Never raises on the flag path.** :meth:`FlagClient.evaluate`, :meth:`FlagClient.is_enabled`
  and :meth:`FlagClient.all_flags` return the caller's default (``{}`` for ``all_flags``) when the
  flag is missing, the agent is down, a call times out or the agent's answer is garbage. The
  details then say why: ``reason`` is ``"ERROR"`` and ``error_code`` is one of

  - ``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``, ``PARSE_ERROR``, ``INVALID_CONTEXT``, ``GENERAL``:
    the agent's evaluation codes, with their meaning in WIRE.md (OpenFeature's meanings).
  - ``TYPE_MISMATCH`` (also client side): the agent's value is not of the ``type`` asked for.
  - ``INVALID_CONTEXT`` (also client side): the context is not a mapping or not JSON-encodable.
  - ``PROVIDER_NOT_READY`` (client side): the agent cannot be reached (no socket, connection
    refused), or could not be moments ago (see the backoff below), or the client is closed.
  - ``GENERAL`` (also client side): the call timed out, the connection broke (twice, if the
    first was a pooled one), or the answer was not a valid response to the request.
  - any other wire code (``BUSY``, ``INTERNAL``...): the agent refused the request.

  Tooling helpers (:meth:`FlagClient.ping`, :meth:`FlagClient.health`) raise
  :class:`FlagsockError` instead, because a tool wants to know that the agent is down.

* **Timeouts bound the whole call** (waiting for a free connection, connecting, writing and
  reading): ``timeout`` seconds, 0.5 by default, give or take 2 ms. A call that times out also
  starts the backoff below, so a hung agent does not cost every caller the full timeout.

* **Reconnects by itself.** Connections are made lazily and kept in a small pool, so one client
  is safe and fast to share between threads. A call that finds its pooled connection broken
  (the agent restarted) retries once at once on a fresh socket. When the agent cannot be reached,
  the client stops trying for a while (50 ms, doubling up to ``max_backoff``): calls in that window
  return the default at once, so a down agent costs almost nothing per call.

* **Cache** (``cache=True``): a background thread keeps a ``subscribe`` connection open; the agent
  pushes an event on every change. Results are cached per (flag, type, context) only while that
  subscription is live, and the whole cache is dropped on every event and whenever the
  subscription is lost, so a cached answer is never older than the push latency. A cached
  check costs a few microseconds. Cached values are shared between callers: treat object values
  as read-only.

* **Threads.** :meth:`FlagClient.close` (or leaving a ``with`` block) stops and joins the
  background thread and ends any :meth:`FlagClient.watch` generator; no thread is left behind.
  A client must not be used across ``fork()``: make a new one in the child.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["DEFAULT_SOCKET", "EvaluationDetails", "FlagClient", "FlagsockError"]

DEFAULT_SOCKET = "/run/flagsock/flagsock.sock"
SOCKET_ENV = "FLAGSOCK_SOCKET"

log = logging.getLogger("flagsock.client")

# Client-side error codes (OpenFeature's names, so a provider maps them one to one).
PROVIDER_NOT_READY = "PROVIDER_NOT_READY"
GENERAL = "GENERAL"
INVALID_CONTEXT = "INVALID_CONTEXT"
TYPE_MISMATCH = "TYPE_MISMATCH"

# Refusals that depend only on the flags being served and the request, so they may be cached
# like values: a change event drops them with everything else.
_CACHEABLE_CODES = frozenset({"FLAG_NOT_FOUND", "TYPE_MISMATCH", "PARSE_ERROR", "INVALID_CONTEXT"})

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "boolean": lambda v: type(v) is bool,
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "float": lambda v: type(v) in (float, int),
    "object": lambda v: type(v) in (dict, list),
}

# What each client-side event says about the subscription; agent events leave it as it is.
_LIVENESS = {"connected": True, "disconnected": False}

_FIRST_BACKOFF = 0.05
# A call may overrun its timeout by this much, to spare a system call per read (see _Conn.bound).
_TIMEOUT_SLACK = 0.002
_READ_CHUNK = 65536
_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Encoders made once: json.dumps() with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class _NoValue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


#: Stands for "the caller's default" inside cached details; never returned to callers.
_NO_VALUE: Any = _NoValue()


class FlagsockError(Exception):
    """The agent refused a request or could not be asked.

    Attributes:
        code: the wire error code (``BUSY``, ``UNKNOWN_OP``...) or a client-side one
            (``PROVIDER_NOT_READY`` when the agent cannot be reached, ``GENERAL`` for a timeout,
            a broken connection or a garbled answer).
        message: what went wrong, for a person.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class EvaluationDetails:
    """The answer for one flag: its value and how the agent arrived at it.

    ``value`` is the caller's default whenever ``error_code`` is set and when the flag resolved
    to no variant (flagd's ``DISABLED`` state). ``revision`` is the agent's snapshot revision, or
    None when the answer did not come from the agent.
    """

    flag_key: str
    value: Any
    variant: str | None = None
    reason: str = "UNKNOWN"
    error_code: str | None = None
    error_message: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    revision: int | None = None


def _failed(flag: str, value: Any, code: str, message: str) -> EvaluationDetails:
    return EvaluationDetails(flag, value, None, "ERROR", code, message, _EMPTY, None)


class _Unavailable(FlagsockError):
    """The agent could not be reached (or was not, moments ago): try again later."""

    def __init__(self, message: str) -> None:
        super().__init__(PROVIDER_NOT_READY, message)


class _Broken(Exception):
    """The connection ended before the answer came; on a reused connection, retry once."""


class _Conn:
    """One connected socket and the bytes read past the last whole line."""

    __slots__ = ("buf", "sock", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.timeout = sock.gettimeout()

    def bound(self, deadline: float) -> None:
        """Make the next socket operation give up at ``deadline`` (within ``_TIMEOUT_SLACK``).

        Setting a socket's timeout is a system call, so it is only lowered when the time left
        is noticeably shorter than the timeout already set.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if self.timeout is None or self.timeout - left > _TIMEOUT_SLACK:
            self.sock.settimeout(left)
            self.timeout = left

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def read_message(self, deadline: float | None) -> dict[str, Any]:
        """Read the next non-blank line and decode it as a JSON object.

        Raises:
            _Broken: end of stream.
            TimeoutError: ``deadline`` (a ``time.monotonic()`` value) passed.
            FlagsockError: the line is not a JSON object.
        """
        buf = self.buf
        while True:
            nl = buf.find(b"\n")
            while nl < 0:
                if deadline is not None:
                    self.bound(deadline)
                chunk = self.sock.recv(_READ_CHUNK)
                if not chunk:
                    raise _Broken("the agent closed the connection")
                start = len(buf)
                buf += chunk
                nl = buf.find(b"\n", start)
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if not line.strip(b" \t\r"):
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                raise FlagsockError(GENERAL, f"the agent sent a line that is not JSON: {line[:80]!r}") from None
            if type(msg) is not dict:
                raise FlagsockError(GENERAL, f"the agent sent a line that is not a JSON object: {line[:80]!r}")
            return msg


class FlagClient:
    """A thread-safe, self-reconnecting client for one flagsock agent.

    Args:
        path: the agent's socket; default ``$FLAGSOCK_SOCKET``, then ``/run/flagsock/flagsock.sock``.
        timeout: seconds one call may take in all, including waiting for a pooled connection.
        cache: keep results, kept fresh by a background ``subscribe`` connection (see the module
            docstring).
        pool_size: at most this many request connections, used by that many threads at once.
        max_backoff: the longest pause, in seconds, between attempts to reach a down agent.
        on_event: called from the background thread with every event dict (see :meth:`watch`);
            giving it starts that thread even without ``cache``. Exceptions it raises are logged.
        cache_size: the most results kept; a full cache starts over.

    Resource handling: sockets and the background thread belong to the client; :meth:`close`
    (or a ``with`` block) releases them all. Nothing is opened before the first call, except
    the background thread when ``cache`` or ``on_event`` is given.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        timeout: float = 0.5,
        cache: bool = False,
        *,
        pool_size: int = 4,
        max_backoff: float = 1.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        cache_size: int = 100_000,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size!r}")
        if path is None:
            path = os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
        self.path = os.fspath(path)
        self.timeout = timeout
        self.max_backoff = max_backoff
        self._ids = itertools.count(1)
        self._closed = threading.Event()

        # The pool: idle connections, and how many exist (idle or in use) out of pool_size.
        # A plain Condition rather than a Semaphore, whose pure-Python acquire costs more than
        # the rest of a call's own work.
        self._pool = threading.Condition(threading.Lock())
        self._idle: list[_Conn] = []
        self._open = 0
        self._pool_size = pool_size
        self._waiting = 0
        self._down_until = 0.0
        self._backoff = 0.0

        # Sockets of live subscriptions (background thread and watch() generators), so that
        # close() can shut them down and wake their blocking reads.
        self._subs_lock = threading.Lock()
        self._sub_socks: set[socket.socket] = set()

        # The cache holds entries only while the subscription is live; _gen changes on every
        # event, (re)subscription and loss, and a result is stored only if _gen did not change
        # while it was being fetched, so nothing fetched before an event outlives the event.
        self._cache: dict[tuple[Any, ...], EvaluationDetails] | None = {} if cache else None
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._gen = 0
        self._live = False
        self._on_event = on_event
        self._thread: threading.Thread | None = None
        if cache or on_event is not None:
            self._thread = threading.Thread(
                target=self._subscriber, name=f"flagsock-subscriber {self.path}", daemon=True
            )
            self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "open"
        return f"<FlagClient {self.path!r} {state} cache={self._cache is not None}>"

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def subscribed(self) -> bool:
        """Whether the background subscription is live, so that results are being cached."""
        return self._live

    # -- flags ------------------------------------------------------------------------------

    def is_enabled(
        self,
        flag: str,
        user_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        default: bool = False,
    ) -> bool:
        """Whether a boolean flag is on for this user and context.

        ``user_id`` becomes the context's ``targetingKey`` (it wins over one in ``context``).
        Returns ``default`` unless the agent answers with a boolean.
        """
        if user_id is not None:
            if not context:
                context = {"targetingKey": user_id}
            elif isinstance(context, Mapping):
                context = {**context, "targetingKey": user_id}
        value = self.evaluate(flag, context, default, "boolean").value
        return value if type(value) is bool else default

    def evaluate(
        self,
        flag: str,
        context: Mapping[str, Any] | None = None,
        default: Any = None,
        type: str | None = None,
    ) -> EvaluationDetails:
        """Evaluate one flag for a context; never raises for a flag, agent or network problem.

        Args:
            flag: the flag key.
            context: the evaluation context, a JSON-encodable mapping; ``targetingKey`` is the
                user id.
            default: returned as ``value`` when the flag cannot be evaluated or resolves to no
                variant.
            type: ``"boolean"``, ``"string"``, ``"integer"``, ``"float"`` or ``"object"``: the agent
                (and the client) answer ``TYPE_MISMATCH`` when the value is of another type.

        Returns:
            The details; see the module docstring for the error codes.
        """
        if flag.__class__ is not str:
            return _failed(str(flag), default, GENERAL, f"flag key must be a string, not {flag!r}")
        if context:
            if context.__class__ is not dict and not isinstance(context, Mapping):  # `type` is a parameter here
                return _failed(flag, default, INVALID_CONTEXT, f"context must be a dict, not {context.__class__.__name__}")
            try:
                ctx_key = _context_key(context)
            except (TypeError, ValueError) as exc:
                return _failed(flag, default, INVALID_CONTEXT, f"context cannot be encoded as JSON: {exc}")
        else:
            ctx_key = ""
        cache = self._cache
        if cache is not None:
            hit = cache.get((flag, type, ctx_key))
            if hit is not None:
                return _with_default(hit, default)
            gen = self._gen

        request: dict[str, Any] = {"op": "evaluate", "flag": flag}
        if ctx_key:
            request["context"] = context if isinstance(context, dict) else dict(context)  # type: ignore[arg-type]
        if type is not None:
            request["type"] = type
        try:
            msg = self._call(request)
        except FlagsockError as exc:
            return _failed(flag, default, exc.code, exc.message)
        details = _details_from(flag, type, msg)
        if cache is not None and (details.error_code is None or details.error_code in _CACHEABLE_CODES):
            with self._cache_lock:
                if self._live and self._gen == gen:
                    if len(cache) >= self._cache_size:
                        cache.clear()
                    cache[(flag, type, ctx_key)] = details
        return _with_default(details, default)

    def all_flags(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every flag's value for a context: ``{key: value}``; never raises.

        Flags that fail to evaluate or resolve to no variant are left out; when the agent
        cannot be asked the result is ``{}``. Not cached.
        """
        request: dict[str, Any] = {"op": "evaluate_all"}
        if context:
            request["context"] = dict(context)
        try:
            result = self._result(self._call(request))
        except (FlagsockError, TypeError, ValueError):
            return {}
        flags = result.get("flags")
        if type(flags) is not dict:
            return {}
        return {k: v["value"] for k, v in flags.items() if type(v) is dict and "value" in v}

    # -- tooling ----------------------------------------------------------------------------

    def ping(self) -> int:
        """The agent's current snapshot revision.

        Raises:
            FlagsockError: the agent is down, refused, timed out or answered garbage.
        """
        revision = self.request("ping").get("revision")
        if type(revision) is not int:
            raise FlagsockError(GENERAL, f"ping answered a revision that is not an integer: {revision!r}")
        return revision

    def health(self) -> dict[str, Any]:
        """The agent's ``health`` result (status, revision, flag_count, last_error...).

        Raises:
            FlagsockError: as for :meth:`ping`.
        """
        return self.request("health")

    def request(self, op: str, **arguments: Any) -> dict[str, Any]:
        """Send any op and return its ``result`` object.

        Unlike the flag methods this ignores the reconnect backoff: a tool asked for an
        answer, so it tries to connect now. Like every request, it is sent again once on a fresh
        socket if a pooled connection turns out to be dead; for ``set`` and ``delete`` pass
        ``if_revision`` so that a repeat cannot apply twice.

        Raises:
            FlagsockError: with the agent's error code, or a client-side code (module docstring).
        """
        if op == "subscribe":
            raise ValueError("use watch() to subscribe")
        return self._result(self._call({"op": op, **arguments}, honour_backoff=False))

    # -- events -----------------------------------------------------------------------------

    def watch(self, reconnect: bool = True) -> Iterator[dict[str, Any]]:
        """Yield the agent's events, on a connection of this generator's own.

        Besides the agent's events (``{"event": "changed", "revision", "flags": {KEY: "added" |
        "updated" | "removed"}}`` and ``{"event": "reload_failed", "revision", "message"}``), the
        client adds two of its own:

        * ``{"event": "connected", "revision": N}`` each time the subscription is (re)established;
          changes made while it was down are not replayed, so treat this as "anything may have
          changed".
        * ``{"event": "disconnected", "message": TEXT, "down_s": SECONDS}`` when the connection is
          lost or cannot be made, and again after each failed attempt to reconnect (at most
          ``max_backoff`` apart), ``down_s`` counting from the loss.

        With ``reconnect=False`` the generator ends after its first ``disconnected``. It ends
        quietly when the client is closed, also from another thread.
        """
        return self._events(reconnect)

    def close(self) -> None:
        """Close every connection, stop the background thread and end running watches.

        Safe to call more than once and from any thread; joins the background thread.
        """
        self._closed.set()
        with self._subs_lock:
            for sock in self._sub_socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._drop_idle()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._forget_cache(live=False)

    # -- connections ------------------------------------------------------------------------

    def _connect(self, deadline: float) -> socket.socket:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FlagsockError(GENERAL, f"timed out after {self.timeout}s waiting for a connection")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            sock.connect(self.path)
        except TimeoutError:
            sock.close()
            raise FlagsockError(GENERAL, f"timed out after {self.timeout}s connecting to {self.path}") from None
        except OSError as exc:
            sock.close()
            raise _Unavailable(f"cannot connect to the flagsock agent at {self.path}: {exc.strerror or exc}") from None
        return sock

    def _call(self, request: dict[str, Any], honour_backoff: bool = True) -> dict[str, Any]:
        """Send one request and return the matching response message.

        Raises:
            FlagsockError: client-side codes only; the agent's refusals come back as messages.
        """
        if self._closed.is_set():
            raise FlagsockError(PROVIDER_NOT_READY, "the client is closed")
        now = time.monotonic()
        if honour_backoff and now < self._down_until:
            raise _Unavailable(
                f"the flagsock agent at {self.path} could not be reached moments ago; "
                f"retrying in {self._down_until - now:.3f}s"
            )
        deadline = now + self.timeout
        rid = next(self._ids)
        request["id"] = rid
        try:
            line = _encode(request).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            raise FlagsockError(INVALID_CONTEXT, f"the request cannot be encoded as JSON: {exc}") from None
        conn = self._checkout(deadline)
        keep = False
        try:
            for attempt in (1, 2):
                reused = conn is not None
                if conn is None:
                    try:
                        conn = _Conn(self._connect(deadline))
                    except _Unavailable:
                        self._note_failure()
                        raise
                try:
                    conn.bound(deadline)
                    conn.sock.sendall(line)
                    msg = conn.read_message(deadline)
                    while "id" not in msg and "ok" not in msg:  # a stray event line
                        msg = conn.read_message(deadline)
                except TimeoutError:
                    self._note_failure()
                    raise FlagsockError(GENERAL, f"no answer from the flagsock agent within {self.timeout}s") from None
                except (_Broken, ConnectionError) as exc:
                    # A pooled connection may have died with an agent restart: one fresh try.
                    conn.close()
                    conn = None
                    if reused and attempt == 1:
                        self._drop_idle()
                        continue
                    self._note_failure()
                    raise FlagsockError(GENERAL, f"connection to the flagsock agent lost: {exc}") from None
                except OSError as exc:
                    self._note_failure()
                    raise FlagsockError(GENERAL, f"connection to the flagsock agent failed: {exc}") from None
                if msg.get("id") != rid:
                    if "id" not in msg and msg.get("ok") is False:
                        return msg  # e.g. BUSY: refused before reading; the agent closes it
                    raise FlagsockError(GENERAL, f"the agent answered id {msg.get('id')!r} to request {rid}")
                self._backoff = 0.0
                keep = True
                return msg
            raise AssertionError("unreachable")
        finally:
            self._checkin(conn, keep)

    def _checkout(self, deadline: float) -> _Conn | None:
        """An idle connection, or None with a slot reserved for a new one.

        Raises:
            FlagsockError: all ``pool_size`` connections stayed busy until ``deadline``.
        """
        with self._pool:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._open < self._pool_size:
                    self._open += 1
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FlagsockError(GENERAL, f"timed out after {self.timeout}s waiting for a free connection")
                self._waiting += 1
                try:
                    self._pool.wait(left)
                finally:
                    self._waiting -= 1

    def _checkin(self, conn: _Conn | None, keep: bool) -> None:
        """Give back what :meth:`_checkout` gave: the connection if ``keep``, else its slot."""
        with self._pool:
            if keep and conn is not None and not self._closed.is_set():
                self._idle.append(conn)
                conn = None
            else:
                self._open -= 1
            if self._waiting:
                self._pool.notify()
        if conn is not None:
            conn.close()

    def _note_failure(self) -> None:
        """Back off: calls in the next moments return at once instead of trying again."""
        self._backoff = min(self.max_backoff, self._backoff * 2 or _FIRST_BACKOFF)
        self._down_until = time.monotonic() + self._backoff

    def _drop_idle(self) -> None:
        with self._pool:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            conn.close()

    @staticmethod
    def _result(msg: dict[str, Any]) -> dict[str, Any]:
        if msg.get("ok") is True and type(msg.get("result")) is dict:
            return msg["result"]
        code, message = _error_of(msg)
        raise FlagsockError(code, message)

    # -- subscription -----------------------------------------------------------------------

    def _events(self, reconnect: bool) -> Iterator[dict[str, Any]]:
        backoff = 0.0
        lost_at: float | None = None
        while not self._closed.is_set():
            reason = "the agent closed the connection"
            sock = None
            try:
                sock = self._connect(time.monotonic() + self.timeout)
                with self._subs_lock:
                    self._sub_socks.add(sock)
                if self._closed.is_set():
                    return
                conn = _Conn(sock)
                sock.settimeout(self.timeout)
                sock.sendall(b'{"op":"subscribe","id":"subscribe"}\n')
                ack = conn.read_message(time.monotonic() + self.timeout)
                if ack.get("id") != "subscribe" or ack.get("ok") is not True:
                    code, message = _error_of(ack)
                    raise FlagsockError(code, f"subscribe refused: {code}: {message}")
                result = ack.get("result")
                revision = result.get("revision") if type(result) is dict else None
                sock.settimeout(None)
                backoff = 0.0
                lost_at = None
                yield {"event": "connected", "revision": revision}
                while True:
                    msg = conn.read_message(None)
                    if "event" in msg and "ok" not in msg:
                        yield msg
            except _Broken:
                pass
            except FlagsockError as exc:
                reason = exc.message
            except TimeoutError:
                reason = f"no answer to subscribe within {self.timeout}s"
            except OSError as exc:
                reason = f"connection lost: {exc}"
            except Exception as exc:  # a bug here must not end the subscription for good
                log.exception("flagsock subscription failed")
                reason = f"unexpected client error: {exc!r}"
            finally:
                if sock is not None:
                    with self._subs_lock:
                        self._sub_socks.discard(sock)
                    sock.close()
            if self._closed.is_set():
                return
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
            yield {"event": "disconnected", "message": reason, "down_s": round(now - lost_at, 3)}
            if not reconnect:
                return
            backoff = min(self.max_backoff, backoff * 2 or _FIRST_BACKOFF)
            if self._closed.wait(backoff):
                return

    def _subscriber(self) -> None:
        try:
            for event in self._events(reconnect=True):
                # Every event drops the cache: per-flag invalidation would save little (changes
                # are rare) and a "connected" after a gap means anything may have changed.
                self._forget_cache(live=_LIVENESS.get(event.get("event")))
                if self._on_event is not None:
                    try:
                        self._on_event(event)
                    except Exception:
                        log.exception("flagsock on_event callback failed for %r", event)
        finally:
            self._forget_cache(live=False)  # however this thread ends, nothing stays cached

    def _forget_cache(self, live: bool | None) -> None:
        with self._cache_lock:
            self._gen += 1
            if live is not None:
                self._live = live
            if self._cache:
                self._cache.clear()


def _context_key(context: Mapping[str, Any]) -> Any:
    """A hashable key equal for two contexts only if they encode to the same JSON.

    Flat contexts of strings (the usual ``targetingKey`` and a few attributes) key by their
    sorted items, several times cheaper than encoding. Anything else keys by its canonical JSON:
    items would let ``True``, ``1`` and ``1.0`` collide, which JSON Logic tells apart.
    """
    items = context.items()
    for k, v in items:
        if type(v) is not str or type(k) is not str:
            json_key: str = _canonical(context)
            return json_key
    return tuple(sorted(items))


def _error_of(msg: dict[str, Any]) -> tuple[str, str]:
    err = msg.get("error")
    if type(err) is dict and type(err.get("code")) is str:
        return err["code"], str(err.get("message", ""))
    return GENERAL, f"the agent sent an answer that is neither a result nor an error: {str(msg)[:200]}"


def _details_from(flag: str, type_: str | None, msg: dict[str, Any]) -> EvaluationDetails:
    """Turn an ``evaluate`` response into details whose missing value is ``_NO_VALUE``."""
    result = msg.get("result")
    if msg.get("ok") is not True or type(result) is not dict:
        code, message = _error_of(msg)
        return _failed(flag, _NO_VALUE, code, message)
    revision = result.get("revision")
    metadata = result.get("metadata")
    metadata = MappingProxyType(metadata) if type(metadata) is dict and metadata else _EMPTY
    err = result.get("error")
    if result.get("reason") == "ERROR" or type(err) is dict:
        code, message = _error_of(result)
        return EvaluationDetails(flag, _NO_VALUE, None, "ERROR", code, message, metadata, revision)
    value = result.get("value", _NO_VALUE)
    if type_ is not None and value is not _NO_VALUE:
        check = _TYPE_CHECKS.get(type_)
        if check is not None and not check(value):
            return EvaluationDetails(
                flag, _NO_VALUE, None, "ERROR", TYPE_MISMATCH,
                f"flag {flag!r} is not of type {type_}: the agent answered {value!r}", metadata, revision,
            )
    reason = result.get("reason")
    return EvaluationDetails(
        flag, value, result.get("variant"), reason if type(reason) is str else "UNKNOWN",
        None, None, metadata, revision,
    )


def _with_default(details: EvaluationDetails, default: Any) -> EvaluationDetails:
    if details.value is not _NO_VALUE:
        return details
    d = details
    return EvaluationDetails(d.flag_key, default, d.variant, d.reason, d.error_code, d.error_message, d.metadata, d.revision)
