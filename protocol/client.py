"""A blocking client for the flagsock agent, in one standard-library-only module.

flagsock's agent answers newline-delimited JSON on a Unix socket; ``docs/protocol.md`` in the
flagsock repository is the full reference. This module is everything an application needs to
ask it for flags::

    from flagsock_client import FlagClient

    flags = FlagClient()                      # $FLAGSOCK_SOCKET, else /run/flagsock/flagsock.sock
    if flags.is_enabled("new_checkout_flow", user_id="user_123"):
        ...
    details = flags.evaluate("banner_text", {"country": "NL"}, default="Hello", type="string")

Vendoring: this file imports nothing but the standard library (Python 3.11+) and nothing from
the rest of flagsock, so you may copy it into your own project under any name (for example
``yourapp/flagsock_client.py``) instead of installing the ``flagsock`` distribution. Keep this
docstring, which says which agent version it speaks to: wire contract v1.

That is also why the client carries its own line reader (:class:`_LineReader`) instead of
importing the agent's framing core (``protocol/framing.py``): a vendored copy has no
``protocol`` package, and an optional import would give the copy and the installed client two
different readers, only one of them tested. The reader here follows the same rules (the same
blank lines skipped, the same ``\\r`` tolerated, the same limit), and flagsock's own tests
feed both the same byte streams, cut at random places, and require the same lines out.

Inside, each part does one job: :class:`_LineReader` frames, :class:`_Conn` is one socket with
its deadline, :class:`_Pool` lends request connections and backs off, :class:`_Cache` keeps
results and their generations, :class:`_EventStreams` subscribes and :class:`_Follower` is the
background thread. :class:`FlagClient` composes them; :func:`call` and :func:`subscribe` need
only a :class:`_Conn`.

What to expect:

* **Never raises on the flag path.** :meth:`FlagClient.evaluate`, :meth:`FlagClient.is_enabled`
  and :meth:`FlagClient.all_flags` return the caller's default (``{}`` for ``all_flags``) when the
  flag is missing, the agent is down, a call times out or the agent's answer is garbage. The
  details then say why: ``reason`` is ``"ERROR"`` and ``error_code`` is one of

  - ``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``, ``PARSE_ERROR``, ``INVALID_CONTEXT``, ``GENERAL``:
    the agent's evaluation codes, with their meaning in docs/protocol.md (OpenFeature's meanings).
  - ``TYPE_MISMATCH`` (also client side): the agent's value is not of the ``type`` asked for.
  - ``INVALID_CONTEXT`` (also client side): the context is not a mapping or not JSON-encodable
    (nested too deeply included).
  - ``PROVIDER_NOT_READY`` (client side): the agent cannot be reached (no socket, connection
    refused), or could not be moments ago (see the backoff below), or the client is closed.
  - ``GENERAL`` (also client side): the call timed out, or the connection broke (twice, if the
    first was a pooled one).
  - ``UNINTELLIGIBLE`` (client side): the agent cannot be understood. Its answer was not UTF-8
    JSON, was longer than ``max_line_bytes`` (1 MiB by default), nested deeper than
    :data:`MAX_DEPTH` (256) or than the caller's stack allows to decode, or was not a valid
    answer to the request. Never a ``RecursionError``.
  - any other wire code (``BUSY``, ``INTERNAL``...): the agent refused the request. An agent at
    its connection limit answers ``BUSY`` and closes; the client reports ``BUSY`` even when the
    agent closed before the request was written.

* **Errors are typed for tools.** :meth:`FlagClient.request`, :meth:`FlagClient.ping`,
  :meth:`FlagClient.health`, and the one-shot :func:`call` and :func:`subscribe` raise a
  :class:`FlagsockError` subclass, because a tool wants to know why there is no answer:
  :class:`AgentRefused` (the agent answered with an error: ``code`` and ``message`` are its own),
  :class:`AgentUnreachable` (no answer: cannot connect, timed out, connection lost) or
  :class:`AgentUnintelligible` (an answer that cannot be understood, see ``UNINTELLIGIBLE``).

* **Timeouts bound the whole call** (waiting for a free connection, connecting, writing and
  reading), however the agent dribbles its answer: ``timeout`` seconds, 0.5 by default, give or
  take 2 ms. A call that times out also starts the backoff below, so a hung agent does not cost
  every caller the full timeout.

* **Memory is bounded.** No line from the agent, answer or event, is held past
  ``max_line_bytes``; a longer one ends that connection.

* **Reconnects by itself.** Connections are made lazily and kept in a small pool, so one client
  is safe and fast to share between threads. A call that finds its pooled connection closed
  before any answer came (the agent restarted) retries once at once on a fresh socket; a
  connection lost in the middle of an answer is not retried, since the agent did act on the
  request. When the agent cannot be reached, the client stops trying for a while (50 ms,
  doubling up to ``max_backoff``): calls in that window return the default at once, so a down
  agent costs almost nothing per call.

* **Cache** (``cache=True``): a background thread keeps a ``subscribe`` connection open; the agent
  pushes an event on every change. Results are cached per (flag, type, context) only while that
  subscription is live, and the whole cache is dropped on every event and whenever the
  subscription is lost, so a cached answer is never older than the push latency. A cached
  check costs a few microseconds. Cached values are shared between callers: treat object values
  as read-only.

* **Events.** :meth:`FlagClient.watch`, the ``on_event`` callback and :func:`subscribe` yield the
  agent's events (``changed``, ``reload_failed``...) plus the client's own
  ``{"event": "subscribed", "revision": N}`` each time a subscription is (re)established, and
  (not from :func:`subscribe`, which raises instead) ``{"event": "disconnected", "message": TEXT,
  "down_s": SECONDS}`` when it is lost.

* **Threads.** :meth:`FlagClient.close` (or leaving a ``with`` block) stops and joins the
  background thread and ends any :meth:`FlagClient.watch` generator; no thread is left behind.
  A client must not be used across ``fork()``: make a new one in the child.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_SOCKET",
    "AgentRefused",
    "AgentUnintelligible",
    "AgentUnreachable",
    "EvaluationDetails",
    "FlagClient",
    "FlagsockError",
    "call",
    "socket_path",
    "subscribe",
]

DEFAULT_SOCKET = "/run/flagsock/flagsock.sock"
SOCKET_ENV = "FLAGSOCK_SOCKET"

#: The longest line read from the agent, not counting its newline: the agent's own default
#: for requests (docs/protocol.md, "Limits").
DEFAULT_MAX_LINE_BYTES = 1 << 20

#: The deepest nesting of arrays and objects accepted in a line from the agent. Deeper than
#: anything the agent serves (its own limit for flag definitions is lower), and shallow enough
#: for the standard library's decoder on any ordinary call stack. A deeper line is
#: ``UNINTELLIGIBLE``; so is one the decoder cannot finish for want of stack.
MAX_DEPTH = 256

log = logging.getLogger("flagsock.client")

# Client-side error codes (OpenFeature's names where it has one, so a provider maps them).
PROVIDER_NOT_READY = "PROVIDER_NOT_READY"
GENERAL = "GENERAL"
INVALID_CONTEXT = "INVALID_CONTEXT"
TYPE_MISMATCH = "TYPE_MISMATCH"
UNINTELLIGIBLE = "UNINTELLIGIBLE"

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
_LIVENESS = {"subscribed": True, "disconnected": False}

_FIRST_BACKOFF = 0.05
# A call may overrun its timeout by this much, to spare a system call per read (see _Conn.bound).
_TIMEOUT_SLACK = 0.002
_READ_CHUNK = 65536
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_BLANK = b" \t\r"
_SUBSCRIBE_LINE = b'{"op":"subscribe","id":"subscribe"}\n'


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Made once: json.dumps()/loads() with options build a new encoder or decoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_decode = json.JSONDecoder(parse_constant=_refuse_constant).decode


class _NoValue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


#: Stands for "the caller's default" inside cached details, and for "no id" in an answer;
#: never returned to callers.
_NO_VALUE: Any = _NoValue()


def socket_path(path: str | os.PathLike[str] | None = None) -> str:
    """The agent's socket: ``path`` if given, else ``$FLAGSOCK_SOCKET``, else the default."""
    if path is not None:
        return os.fspath(path)
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


# -- errors -----------------------------------------------------------------------------------


class FlagsockError(Exception):
    """The agent refused a request or could not be asked.

    Attributes:
        code: the wire error code (``BUSY``, ``UNKNOWN_OP``...) or a client-side one (module
            docstring).
        message: what went wrong, for a person.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentRefused(FlagsockError):
    """The agent answered with an error; ``code`` and ``message`` are the agent's own, and
    ``error`` the whole error object (``explain`` adds its trace to it)."""

    error: dict[str, Any] | None = None


class AgentUnreachable(FlagsockError):
    """No answer could be had: the agent cannot be reached, timed out or dropped the connection.

    ``code`` is ``PROVIDER_NOT_READY`` when no connection could be made (or the client is closed
    or backing off), ``GENERAL`` for a timeout or a lost connection.
    """


class AgentUnintelligible(FlagsockError):
    """The agent answered something that is not the protocol; ``code`` is ``UNINTELLIGIBLE``."""

    def __init__(self, message: str) -> None:
        super().__init__(UNINTELLIGIBLE, f"the flagsock agent cannot be understood: {message}")


class _Lost(AgentUnreachable):
    """The connection ended; ``partial`` says whether it ended in the middle of a line."""

    def __init__(self, message: str, partial: bool) -> None:
        super().__init__(GENERAL, message)
        self.partial = partial

    def public(self) -> AgentUnreachable:
        """The same, as the class callers are told to expect."""
        return AgentUnreachable(self.code, self.message)


# -- evaluation results -----------------------------------------------------------------------


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


def _details_from(flag: str, type_: str | None, result: dict[str, Any]) -> EvaluationDetails:
    """Turn an ``evaluate`` result into details whose missing value is ``_NO_VALUE``."""
    revision = result.get("revision")
    if revision.__class__ is not int:
        revision = None
    metadata = result.get("metadata")
    metadata = MappingProxyType(metadata) if type(metadata) is dict and metadata else _EMPTY
    err = result.get("error")
    if result.get("reason") == "ERROR" or type(err) is dict:
        code, message = _error_fields(err)
        return EvaluationDetails(flag, _NO_VALUE, None, "ERROR", code, message, metadata, revision)
    value = result.get("value", _NO_VALUE)
    if type_ is not None and value is not _NO_VALUE:
        check = _TYPE_CHECKS.get(type_)
        if check is not None and not check(value):
            return EvaluationDetails(
                flag, _NO_VALUE, None, "ERROR", TYPE_MISMATCH,
                f"flag {flag!r} is not of type {type_}: the agent answered {_describe(value)}", metadata, revision,
            )
    variant = result.get("variant")
    reason = result.get("reason")
    return EvaluationDetails(
        flag, value, variant if type(variant) is str else None, reason if type(reason) is str else "UNKNOWN",
        None, None, metadata, revision,
    )


def _with_default(details: EvaluationDetails, default: Any) -> EvaluationDetails:
    if details.value is not _NO_VALUE:
        return details
    d = details
    return EvaluationDetails(d.flag_key, default, d.variant, d.reason, d.error_code, d.error_message, d.metadata, d.revision)


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


def _describe(value: Any) -> str:
    """A short description of a decoded JSON value, safe however deep it is (no repr of containers)."""
    if type(value) is dict:
        return "an object"
    if type(value) is list:
        return "an array"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _error_fields(err: Any) -> tuple[str, str]:
    """The code and message of an ``error`` object from the agent."""
    if type(err) is dict and type(err.get("code")) is str:
        message = err.get("message")
        return err["code"], message if type(message) is str else ""
    raise AgentUnintelligible(f"an error answer whose error is {_describe(err)}, not an object with a code")


# -- framing ----------------------------------------------------------------------------------


class _TooLong:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<line too long>"


#: What :meth:`_LineReader.feed` returns for a line that went past the limit.
_TOO_LONG: Any = _TooLong()


class _LineReader:
    """Split a byte stream into lines, never holding more than the limit plus one chunk.

    The rules of the agent's framing core (``protocol/framing.py``; see the module docstring for
    why they are restated here): a line ends at ``\\n``, one ``\\r`` before it is dropped, blank
    lines (spaces, tabs, ``\\r``) are skipped, and a line longer than ``max_line_bytes`` comes
    out as :data:`_TOO_LONG`, once, as soon as it is known to be too long; its bytes are
    dropped up to its newline.
    """

    __slots__ = ("_buf", "_discarding", "_max")

    @property
    def partial(self) -> bool:
        """Whether the stream is in the middle of a line (held, or being discarded)."""
        return bool(self._buf) or self._discarding

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, not {max_line_bytes!r}")
        self._max = max_line_bytes
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[Any]:
        """Take ``data``; return the lines (bytes) and :data:`_TOO_LONG` marks it completes."""
        limit = self._max
        buf = self._buf
        if not buf and not self._discarding and data[-1:] == b"\n" and len(data) <= limit:
            # What an answer usually is: whole lines in one chunk, so none can be too long.
            return [ln[:-1] if ln[-1:] == b"\r" else ln for ln in data.split(b"\n") if ln.strip(_BLANK)]
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return []
            self._discarding = False
            data = data[nl + 1 :]
        out: list[Any] = []
        scan = len(buf)  # the bytes already held contain no newline
        buf += data
        start = 0
        nl = buf.find(b"\n", scan)
        while nl >= 0:
            line = bytes(buf[start:nl])
            if line[-1:] == b"\r":
                line = line[:-1]
            if len(line) > limit:
                out.append(_TOO_LONG)
            elif line.strip(_BLANK):
                out.append(line)
            start = nl + 1
            nl = buf.find(b"\n", start)
        del buf[:start]
        if len(buf) > limit + 1:  # + 1: a last b"\r" may yet turn out to end the line
            out.append(_TOO_LONG)
            buf.clear()
            self._discarding = True
        return out


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET_STEPS = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = (-1, 0, 1)  # indexed by the byte _BRACKET_STEPS maps a bracket to


def _nesting(line: bytes) -> int:
    """How deep arrays and objects nest in a JSON line (brackets inside strings not counted)."""
    brackets = _JSON_STRING.sub(b"", line).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


# -- one connection ---------------------------------------------------------------------------


class _Conn:
    """One connected socket, its line reader and the lines read but not yet taken."""

    __slots__ = ("limit", "reader", "reusable", "sock", "timeout", "_lines")

    def __init__(self, sock: socket.socket, max_line_bytes: int) -> None:
        self.sock = sock
        self.timeout = sock.gettimeout()
        self.limit = max_line_bytes
        self.reader = _LineReader(max_line_bytes)
        self._lines: list[Any] = []
        self.reusable = True  # false once the agent said it closes this connection

    @classmethod
    def open(cls, path: str, deadline: float, max_line_bytes: int) -> _Conn:
        """Connect to ``path`` by ``deadline``.

        Raises:
            AgentUnreachable: no connection (``PROVIDER_NOT_READY``), or a timeout (``GENERAL``).

        Resource handling: the socket belongs to the returned connection; none is left open
        on failure.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise AgentUnreachable(GENERAL, f"timed out waiting to connect to the flagsock agent at {path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            sock.connect(path)
        except TimeoutError:
            sock.close()
            raise AgentUnreachable(GENERAL, f"timed out connecting to the flagsock agent at {path}") from None
        except OSError as exc:
            sock.close()
            raise AgentUnreachable(PROVIDER_NOT_READY, f"cannot connect to the flagsock agent at {path}: {_why(exc)}") from None
        return cls(sock, max_line_bytes)

    def bound(self, deadline: float) -> None:
        """Make the next socket operation give up at ``deadline`` (within ``_TIMEOUT_SLACK``).

        Setting a socket's timeout is a system call, so it is only changed when it differs
        noticeably from the time left, either way: a pooled socket keeps the timeout the end of
        its last call left it, which may be shorter than this call's.

        Raises:
            TimeoutError: ``deadline`` has passed.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        timeout = self.timeout
        if timeout is None or timeout - left > _TIMEOUT_SLACK or left - timeout > _TIMEOUT_SLACK:
            self.sock.settimeout(left)
            self.timeout = left

    def unbound(self) -> None:
        """Let reads wait for ever, as an event stream does."""
        self.sock.settimeout(None)
        self.timeout = None

    def send(self, data: bytes, deadline: float) -> None:
        """Write ``data`` by ``deadline``.

        An agent that refuses a connection (``BUSY``) writes why and closes, perhaps before the
        request is written, so a write to a closed connection is not an error here: the next
        read finds the agent's answer, or the end of the stream.

        Raises:
            TimeoutError: the agent did not take the bytes in time.
            AgentUnreachable: the write failed for another reason.
        """
        self.bound(deadline)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except TimeoutError:
            raise
        except OSError as exc:
            raise AgentUnreachable(GENERAL, f"cannot write to the flagsock agent: {_why(exc)}") from None

    def read_message(self, deadline: float | None) -> dict[str, Any]:
        """Read the next line and decode it as a JSON object; None waits for ever.

        Raises:
            _Lost: the stream ended (``partial``: in the middle of a line)
            TimeoutError: ``deadline`` (a ``time.monotonic()`` value) passed.
            AgentUnintelligible: the line is too long, not UTF-8, not JSON, nested too deeply to
                decode, or not an object.
            AgentUnreachable: another socket error.
        """
        lines = self._lines
        while not lines:
            if deadline is not None:
                self.bound(deadline)
            try:
                data = self.sock.recv(_READ_CHUNK)
            except TimeoutError:
                raise
            except ConnectionError:
                raise self._lost("reset") from None
            except OSError as exc:
                raise AgentUnreachable(GENERAL, f"cannot read from the flagsock agent: {_why(exc)}") from None
            if not data:
                raise self._lost("closed")
            lines += self.reader.feed(data)
        line = lines.pop(0)
        if line is _TOO_LONG:
            self.reusable = False
            raise AgentUnintelligible(
                f"it sent a line longer than {self.limit} bytes (max_line_bytes); "
                "if the agent is right to, raise max_line_bytes"
            )
        if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _nesting(line) > MAX_DEPTH:
            raise AgentUnintelligible(f"it sent JSON nested deeper than {MAX_DEPTH} levels: {line[:60]!r}...")
        try:
            msg = _decode(line.decode())
        except RecursionError:
            raise AgentUnintelligible(f"it sent JSON nested too deeply to decode: {line[:60]!r}...") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise AgentUnintelligible(f"it sent a line that is not UTF-8 JSON ({_short(exc)}): {line[:80]!r}") from None
        if msg.__class__ is not dict:
            raise AgentUnintelligible(f"it sent a line that is not a JSON object: {line[:80]!r}")
        return msg

    def _lost(self, how: str) -> _Lost:
        if self.reader.partial:
            return _Lost(f"the flagsock agent {how} the connection in the middle of a line", True)
        return _Lost(f"the flagsock agent {how} the connection", False)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _exchange(conn: _Conn, line: bytes, rid: Any, deadline: float) -> dict[str, Any]:
    """Send one request line on ``conn`` and return the ``result`` of its answer.

    Raises:
        AgentRefused: the agent answered with an error (``conn.reusable`` is False when it said
            so before reading the request, like ``BUSY``, and closes the connection).
        AgentUnintelligible: the answer is not a valid answer to the request.
        _Lost, TimeoutError, AgentUnreachable: as :meth:`_Conn.read_message`.
    """
    conn.send(line, deadline)
    while True:
        msg = conn.read_message(deadline)
        ok = msg.get("ok")
        if ok is None and "event" in msg:
            continue  # an event line: none is due on a request connection, but it is harmless
        got = msg.get("id", _NO_VALUE)
        if got is _NO_VALUE and ok is False:
            conn.reusable = False  # refused before reading, such as BUSY: the agent closes it
            raise AgentRefused(*_error_fields(msg.get("error")))
        if got.__class__ is not rid.__class__ or got != rid:
            said = "without an id" if got is _NO_VALUE else f"with id {_describe(got)}"
            raise AgentUnintelligible(f"it answered request {rid!r} {said}")
        if ok is True:
            result = msg.get("result")
            if result.__class__ is dict:
                return result
            raise AgentUnintelligible(f"its answer's result is {_describe(result)}, not an object")
        if ok is False:
            refused = AgentRefused(*_error_fields(msg.get("error")))
            refused.error = msg["error"]
            raise refused
        raise AgentUnintelligible(f"its answer has \"ok\": {_describe(ok)}, neither true nor false")


def _why(exc: OSError) -> str:
    """Why a connection failed, in words that say what to do."""
    if isinstance(exc, FileNotFoundError):
        return "there is no socket there (is the agent running? is the path right?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing is listening; is the agent running?)"
    if isinstance(exc, PermissionError):
        return "permission denied (the socket's mode and group say who may connect)"
    return exc.strerror or str(exc)


def _short(exc: BaseException, limit: int = 120) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _subscribed(conn: _Conn, deadline: float) -> dict[str, Any]:
    """Subscribe on ``conn``; return the client's ``subscribed`` event for it.

    Raises:
        AgentRefused, AgentUnintelligible, AgentUnreachable: as :func:`_exchange`, with a
            timeout as :class:`AgentUnreachable`.
    """
    try:
        result = _exchange(conn, _SUBSCRIBE_LINE, "subscribe", deadline)
    except TimeoutError:
        raise AgentUnreachable(GENERAL, "the flagsock agent did not answer subscribe in time") from None
    except AgentRefused as exc:
        raise AgentRefused(exc.code, f"subscribe refused: {exc.code}: {exc.message}") from None
    conn.unbound()
    revision = result.get("revision")
    return {"event": "subscribed", "revision": revision if revision.__class__ is int else None}


def _events_on(conn: _Conn) -> Iterator[dict[str, Any]]:
    """The agent's events on a subscribed connection, until it ends (which raises)."""
    while True:
        msg = conn.read_message(None)
        if "ok" in msg:
            continue  # an answer: none is due, but it is harmless
        if msg.get("event").__class__ is not str:
            raise AgentUnintelligible(f"it sent an event line whose \"event\" is {_describe(msg.get('event'))}")
        yield msg


# -- one-shot calls, for tools ----------------------------------------------------------------


def call(
    path: str | os.PathLike[str] | None,
    message: Mapping[str, Any],
    *,
    timeout: float = 5.0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> dict[str, Any]:
    """Send one request on a connection of its own and return the answer's ``result``.

    Args:
        path: the agent's socket; None for ``$FLAGSOCK_SOCKET``, then the default.
        message: the request, ``{"op": ..., **arguments}``; an ``id`` is added.
        timeout: seconds for the whole call: connecting, writing and reading the answer,
            however slowly the agent sends it.
        max_line_bytes: the longest answer read; longer is :class:`AgentUnintelligible`.

    Raises:
        AgentRefused: the agent answered with an error (``BUSY`` included).
        AgentUnreachable: no connection, a timeout, or the connection ended before the answer.
        AgentUnintelligible: the answer cannot be understood.
        ValueError: ``message`` cannot be encoded as JSON.

    Resource handling: the connection is closed before this returns or raises.
    """
    deadline = time.monotonic() + timeout
    request = dict(message)
    request["id"] = 1
    try:
        line = _encode(request).encode() + b"\n"
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the request cannot be encoded as JSON: {_short(exc)}") from None
    path = socket_path(path)
    conn = _Conn.open(path, deadline, max_line_bytes)
    try:
        return _exchange(conn, line, 1, deadline)
    except _Lost as exc:
        raise exc.public() from None
    except TimeoutError:
        raise AgentUnreachable(GENERAL, f"no answer from the flagsock agent at {path} within {timeout}s") from None
    finally:
        conn.close()


def subscribe(
    path: str | os.PathLike[str] | None,
    *,
    timeout: float = 5.0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[dict[str, Any]]:
    """Subscribe on a connection of its own; yield ``subscribed``, then the agent's events.

    The generator never ends by itself: when the connection does, it raises. Close it (or
    leave the loop) to let go of the connection.

    Args:
        path: the agent's socket; None for ``$FLAGSOCK_SOCKET``, then the default.
        timeout: seconds for connecting and subscribing; events are waited for without limit.
        max_line_bytes: the longest line read.

    Raises:
        AgentRefused: the agent refused to subscribe (``BUSY`` included).
        AgentUnreachable: no connection, no answer in time, or the connection ended.
        AgentUnintelligible: the agent sent something that cannot be understood.
    """
    deadline = time.monotonic() + timeout
    conn = _Conn.open(socket_path(path), deadline, max_line_bytes)
    try:
        yield _subscribed(conn, deadline)
        yield from _events_on(conn)
    except _Lost as exc:
        raise exc.public() from None
    finally:
        conn.close()


# -- the parts of a FlagClient ----------------------------------------------------------------


class _Pool:
    """Request connections (at most ``size``), the call on one of them, and the back-off.

    A plain Condition rather than a Semaphore guards the pool: the pure-Python acquire of a
    Semaphore costs more than the rest of a call's own work.
    """

    def __init__(
        self, path: str, timeout: float, size: int, max_backoff: float, max_line_bytes: int, closed: threading.Event
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.max_line_bytes = max_line_bytes
        self._closed = closed
        self._ids = itertools.count(1)
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[_Conn] = []
        self._open = 0  # connections that exist, idle or in use
        self._size = size
        self._waiting = 0
        self._down_until = 0.0
        self._backoff = 0.0

    def call(self, request: dict[str, Any], honour_backoff: bool = True) -> dict[str, Any]:
        """Send one request (an ``id`` is added) and return its answer's ``result``.

        Raises:
            AgentRefused, AgentUnreachable, AgentUnintelligible: as :func:`call`.
            FlagsockError: ``INVALID_CONTEXT``, the request cannot be encoded as JSON.
        """
        if self._closed.is_set():
            raise AgentUnreachable(PROVIDER_NOT_READY, "the client is closed")
        now = time.monotonic()
        if honour_backoff and now < self._down_until:
            raise AgentUnreachable(
                PROVIDER_NOT_READY,
                f"the flagsock agent at {self.path} could not be reached moments ago; "
                f"retrying in {self._down_until - now:.3f}s",
            )
        deadline = now + self.timeout
        rid = next(self._ids)
        request["id"] = rid
        try:
            line = _encode(request).encode() + b"\n"
        except (TypeError, ValueError, RecursionError) as exc:
            raise FlagsockError(INVALID_CONTEXT, f"the request cannot be encoded as JSON: {_short(exc)}") from None
        conn = self._checkout(deadline)
        keep = False
        try:
            for attempt in (1, 2):
                reused = conn is not None
                if conn is None:
                    try:
                        conn = _Conn.open(self.path, deadline, self.max_line_bytes)
                    except AgentUnreachable:
                        self._note_failure()
                        raise
                try:
                    result = _exchange(conn, line, rid, deadline)
                except AgentRefused:
                    self._backoff = 0.0
                    keep = conn.reusable
                    raise
                except _Lost as exc:
                    conn.close()
                    conn = None
                    if reused and attempt == 1 and not exc.partial:
                        # A pooled connection closed before answering (the agent restarted, or
                        # closed it as idle): one fresh try. Not after part of an answer came,
                        # which says that the agent acted on the request.
                        self._drop_idle()
                        continue
                    self._note_failure()
                    raise exc.public() from None
                except TimeoutError:
                    self._note_failure()
                    raise AgentUnreachable(GENERAL, f"no answer from the flagsock agent within {self.timeout}s") from None
                except AgentUnreachable:
                    self._note_failure()
                    raise
                self._backoff = 0.0
                keep = True
                return result
            raise AssertionError("unreachable")
        finally:
            self._checkin(conn, keep)

    def _checkout(self, deadline: float) -> _Conn | None:
        """An idle connection, or None with a slot reserved for a new one.

        Raises:
            AgentUnreachable: all connections stayed busy until ``deadline``.
        """
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._open < self._size:
                    self._open += 1
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AgentUnreachable(GENERAL, f"timed out after {self.timeout}s waiting for a free connection")
                self._waiting += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting -= 1

    def _checkin(self, conn: _Conn | None, keep: bool) -> None:
        """Give back what :meth:`_checkout` gave: the connection if ``keep``, else its slot."""
        with self._cond:
            if keep and conn is not None and not self._closed.is_set():
                self._idle.append(conn)
                conn = None
            else:
                self._open -= 1
            if self._waiting:
                self._cond.notify()
        if conn is not None:
            conn.close()

    def _note_failure(self) -> None:
        """Back off: calls in the next moments return at once instead of trying again."""
        self._backoff = min(self.max_backoff, self._backoff * 2 or _FIRST_BACKOFF)
        self._down_until = time.monotonic() + self._backoff

    def _drop_idle(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            conn.close()

    def close(self) -> None:
        self._drop_idle()


class _Cache:
    """Cached results, kept only while the subscription is live.

    ``gen`` changes on every event, (re)subscription and loss, and a result is stored only if it
    did not change while the result was being fetched, so nothing fetched before an event
    outlives the event. ``entries`` is read without the lock (a dict lookup is atomic).
    """

    __slots__ = ("entries", "gen", "live", "_lock", "_size")

    def __init__(self, size: int) -> None:
        self.entries: dict[tuple[Any, ...], EvaluationDetails] = {}
        self.gen = 0
        self.live = False
        self._lock = threading.Lock()
        self._size = size

    def store(self, key: tuple[Any, ...], details: EvaluationDetails, gen: int) -> None:
        with self._lock:
            if self.live and self.gen == gen:
                if len(self.entries) >= self._size:
                    self.entries.clear()  # a full cache starts over
                self.entries[key] = details

    def forget(self, live: bool | None) -> None:
        """Drop every entry; ``live`` (when not None) is whether the subscription now is."""
        with self._lock:
            self.gen += 1
            if live is not None:
                self.live = live
            if self.entries:
                self.entries.clear()


class _EventStreams:
    """Subscriptions on connections of their own, that close() can cut from any thread."""

    def __init__(self, path: str, timeout: float, max_backoff: float, max_line_bytes: int, closed: threading.Event) -> None:
        self.path = path
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.max_line_bytes = max_line_bytes
        self._closed = closed
        self._lock = threading.Lock()
        self._open: set[_Conn] = set()

    def stream(self, reconnect: bool) -> Iterator[dict[str, Any]]:
        """``subscribed``, the agent's events and ``disconnected``, reconnecting with back-off.

        Ends after the first ``disconnected`` without ``reconnect``, and quietly on close().
        """
        backoff = 0.0
        lost_at: float | None = None
        while not self._closed.is_set():
            conn = None
            reason = "the subscription ended"
            try:
                deadline = time.monotonic() + self.timeout
                conn = _Conn.open(self.path, deadline, self.max_line_bytes)
                with self._lock:
                    self._open.add(conn)
                if self._closed.is_set():
                    return
                subscribed = _subscribed(conn, deadline)
                backoff = 0.0
                lost_at = None
                yield subscribed
                yield from _events_on(conn)
            except FlagsockError as exc:
                reason = exc.message
            except Exception as exc:  # a bug here must not end the subscription for good
                log.exception("flagsock subscription failed")
                reason = f"unexpected client error: {exc!r}"
            finally:
                if conn is not None:
                    with self._lock:
                        self._open.discard(conn)
                    conn.close()
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

    def close(self) -> None:
        """Wake every blocked read: the streams see the end of their connection and stop."""
        with self._lock:
            for conn in self._open:
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Follower:
    """The background thread: follows one stream, dropping the cache on every event.

    Args:
        on_event: called with every event; exceptions it raises are logged.
    """

    def __init__(
        self, streams: _EventStreams, cache: _Cache, on_event: Callable[[dict[str, Any]], None] | None
    ) -> None:
        self._streams = streams
        self._cache = cache
        self._on_event = on_event
        self._thread = threading.Thread(target=self._run, name=f"flagsock-subscriber {streams.path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cache = self._cache
        try:
            for event in self._streams.stream(reconnect=True):
                # Every event drops the cache: per-flag invalidation would save little (changes
                # are rare) and a "subscribed" after a gap means anything may have changed.
                cache.forget(live=_LIVENESS.get(event["event"]))
                if self._on_event is not None:
                    try:
                        self._on_event(event)
                    except Exception:
                        log.exception("flagsock on_event callback failed for %s event", event["event"])
        finally:
            cache.forget(live=False)  # however this thread ends, nothing stays cached

    def join(self) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join()


# -- the face ---------------------------------------------------------------------------------


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
        max_line_bytes: the longest line, answer or event, read from the agent (1 MiB).

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
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size!r}")
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, not {max_line_bytes!r}")
        self.path = socket_path(path)
        self.timeout = timeout
        self.max_backoff = max_backoff
        self._closed = threading.Event()
        self._pool = _Pool(self.path, timeout, pool_size, max_backoff, max_line_bytes, self._closed)
        self._call = self._pool.call
        self._streams = _EventStreams(self.path, timeout, max_backoff, max_line_bytes, self._closed)
        self._cache = _Cache(cache_size)
        # The cache's dict itself (never replaced, only cleared), or None: one lookup per hit.
        self._entries = self._cache.entries if cache else None
        self._follower = _Follower(self._streams, self._cache, on_event) if cache or on_event is not None else None

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "open"
        return f"<FlagClient {self.path!r} {state} cache={self._entries is not None}>"

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def subscribed(self) -> bool:
        """Whether the background subscription is live, so that results are being cached."""
        return self._cache.live

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
            except (TypeError, ValueError, RecursionError) as exc:
                return _failed(flag, default, INVALID_CONTEXT, f"context cannot be encoded as JSON: {_short(exc)}")
        else:
            ctx_key = ""
        entries = self._entries
        if entries is not None:
            hit = entries.get((flag, type, ctx_key))
            if hit is not None:
                return _with_default(hit, default)
            gen = self._cache.gen

        request: dict[str, Any] = {"op": "evaluate", "flag": flag}
        if ctx_key:
            request["context"] = context if isinstance(context, dict) else dict(context)  # type: ignore[arg-type]
        if type is not None:
            request["type"] = type
        try:
            details = _details_from(flag, type, self._call(request))
        except AgentRefused as exc:
            details = _failed(flag, _NO_VALUE, exc.code, exc.message)
        except FlagsockError as exc:
            return _failed(flag, default, exc.code, exc.message)
        if entries is not None and (details.error_code is None or details.error_code in _CACHEABLE_CODES):
            self._cache.store((flag, type, ctx_key), details, gen)
        return _with_default(details, default)

    def all_flags(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every flag's value for a context: ``{key: value}``; never raises.

        Flags that fail to evaluate or resolve to no variant are left out; when the agent
        cannot be asked the result is ``{}``. Not cached.
        """
        request: dict[str, Any] = {"op": "evaluate_all"}
        try:
            if context:
                request["context"] = dict(context)
            result = self._call(request)
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
            AgentRefused, AgentUnreachable, AgentUnintelligible: as :meth:`request`.
        """
        revision = self.request("ping").get("revision")
        if type(revision) is not int:
            raise AgentUnintelligible(f"ping answered a revision that is not an integer: {_describe(revision)}")
        return revision

    def health(self) -> dict[str, Any]:
        """The agent's ``health`` result (status, revision, flag_count, last_error...).

        Raises:
            AgentRefused, AgentUnreachable, AgentUnintelligible: as :meth:`request`.
        """
        return self.request("health")

    def request(self, op: str, **arguments: Any) -> dict[str, Any]:
        """Send any op and return its ``result`` object.

        Unlike the flag methods this ignores the reconnect backoff: a tool asked for an
        answer, so it tries to connect now. Like every request, it is sent again once on a fresh
        socket if a pooled connection turns out to have been closed before it answered; for
        ``set`` and ``delete`` pass ``if_revision`` so that a repeat cannot apply twice.

        Raises:
            AgentRefused: the agent answered with an error.
            AgentUnreachable: no connection, a timeout, or the connection ended first.
            AgentUnintelligible: the answer cannot be understood.
            FlagsockError: ``INVALID_CONTEXT``, the arguments cannot be encoded as JSON.
        """
        if op == "subscribe":
            raise ValueError("use watch() to subscribe")
        return self._call({"op": op, **arguments}, honour_backoff=False)

    # -- events -----------------------------------------------------------------------------

    def watch(self, reconnect: bool = True) -> Iterator[dict[str, Any]]:
        """Yield the agent's events, on a connection of this generator's own.

        Besides the agent's events (``{"event": "changed", "revision", "flags": {KEY: "added" |
        "updated" | "removed"}}``, ``{"event": "reload_failed", "revision", "message"}`` and
        others in docs/protocol.md), the client adds two of its own:

        * ``{"event": "subscribed", "revision": N}`` each time the subscription is
          (re)established; changes made while it was down are not replayed, so treat this as
          "anything may have changed".
        * ``{"event": "disconnected", "message": TEXT, "down_s": SECONDS}`` when the connection is
          lost or cannot be made, or the agent sends what cannot be understood, and again after
          each failed attempt to reconnect (at most ``max_backoff`` apart), ``down_s`` counting
          from the loss.

        With ``reconnect=False`` the generator ends after its first ``disconnected``. It ends
        quietly when the client is closed, also from another thread.
        """
        return self._streams.stream(reconnect)

    def close(self) -> None:
        """Close every connection, stop the background thread and end running watches.

        Safe to call more than once and from any thread; joins the background thread.
        """
        self._closed.set()
        self._streams.close()
        self._pool.close()
        if self._follower is not None:
            self._follower.join()
        self._cache.forget(live=False)
