"""One watch stream: a streaming POST to ``/v3/watch``, read a line at a time.

The gateway writes each watch response as one JSON object on its own line (``{"result": ...}``,
or ``{"error": ...}`` when the stream fails), so the body is split on lines with
``aiter_lines()``, never on the chunks the network happens to deliver. Every wait has a deadline:
the first answer ("created") within the request deadline, and then no silence longer than the
idle deadline (etcd's own progress notices come only every 10 minutes by default, so a stream
that stopped without closing is found by this deadline, and reopening from ``next_revision``
loses nothing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal

import attrs
import httpx
import orjson
import trio

from agent.sources.etcd.codec import KeyValue, as_int, b64, header_revision
from agent.sources.etcd.errors import (
    AuthError,
    BadAnswer,
    Compacted,
    EndpointDown,
    EtcdError,
    EtcdUnavailable,
    NoLeader,
    WatchCanceled,
    WatchIdle,
)
from agent.sources.etcd.refusals import classify_refusal
from agent.sources.etcd.transport import Transport

WATCH = "/v3/watch"


@attrs.frozen
class WatchEvent:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue  # for a DELETE: the key and the revision that deleted it
    prev_kv: KeyValue | None = None


@attrs.frozen
class WatchResponse:
    """A batch of events (all of one or more whole revisions), or a progress notice (no events)."""

    revision: int  # the store revision when the batch was sent
    events: tuple[WatchEvent, ...]

    @property
    def progress(self) -> bool:
        return not self.events


def _event(raw: Mapping[str, Any]) -> WatchEvent:
    kind = raw.get("type", "PUT")
    if kind not in ("PUT", "DELETE"):
        raise ValueError(f"unknown event type {kind!r}")
    prev = raw.get("prev_kv")
    return WatchEvent(kind, KeyValue.from_json(raw.get("kv") or {}),
                      KeyValue.from_json(prev) if isinstance(prev, Mapping) else None)


def parse_line(endpoint: str, line: str, requested: int) -> WatchResponse | None:
    """One line of the stream: a WatchResponse, None for "created", or the error it reports.

    Raises:
        Compacted: ``requested`` is older than the oldest revision kept.
        AuthError, NoLeader, WatchCanceled, EndpointDown: the watch ended for that reason.
        BadAnswer: the line is not a watch response.
    """
    try:
        message = orjson.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        if "error" in message:
            raise classify_refusal(endpoint, 503, message, write=False)
        result = message.get("result")
        if not isinstance(result, dict):
            raise ValueError("no result")
        if result.get("canceled"):
            raise _canceled(endpoint, result, requested)
        if result.get("created"):
            return None
        events = tuple(_event(e) for e in result.get("events") or ())
        return WatchResponse(header_revision(result), events)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise BadAnswer(endpoint, f"unreadable watch line ({exc}): {line[:120]!r}") from exc


def _canceled(endpoint: str, result: Mapping[str, Any], requested: int) -> EtcdError:
    compact = as_int(result.get("compact_revision"), "compact_revision")
    if compact > 0:
        return Compacted(endpoint, requested, compact)
    reason = str(result.get("cancel_reason") or "")
    if "permission denied" in reason or "auth" in reason:
        return AuthError(endpoint, f"watch refused: {reason}")
    if "no leader" in reason:
        return NoLeader(endpoint, f"watch canceled: {reason}")
    return WatchCanceled(endpoint, reason)


class WatchStream:
    """An open watch. Iterate for WatchResponses; ``next_revision`` is where to resume it.

    Iteration raises the errors of ``parse_line``, ``WatchIdle`` after ``idle_timeout`` of
    silence, and ``EndpointDown`` when the stream breaks or ends.
    """

    def __init__(self, endpoint: str, response: httpx.Response, start_revision: int, idle_timeout: float) -> None:
        self.endpoint = endpoint
        self.next_revision = start_revision
        self._requested = start_revision
        self._idle_timeout = idle_timeout
        self._lines = response.aiter_lines()

    async def _line(self, timeout: float) -> str:
        while True:
            with trio.move_on_after(timeout):
                try:
                    line = await self._lines.__anext__()
                except StopAsyncIteration:
                    raise EndpointDown(self.endpoint, "the watch stream ended") from None
                except httpx.TransportError as exc:
                    raise EndpointDown(self.endpoint, f"the watch stream broke: {exc or type(exc).__name__}") from exc
                if line.strip():
                    return line
                continue
            raise WatchIdle(self.endpoint, f"the watch said nothing for {timeout} s")

    async def wait_created(self, timeout: float) -> None:
        if parse_line(self.endpoint, await self._line(timeout), self._requested) is not None:
            raise BadAnswer(self.endpoint, "the watch sent events before saying it was created")

    def __aiter__(self) -> "WatchStream":
        return self

    async def __anext__(self) -> WatchResponse:
        while True:
            response = parse_line(self.endpoint, await self._line(self._idle_timeout), self._requested)
            if response is None:
                continue
            if response.events:
                self.next_revision = max(self.next_revision, response.events[-1].kv.mod_revision + 1)
            elif response.revision >= self.next_revision:
                self.next_revision = response.revision + 1  # a progress notice: all before it was sent
            return response


def create_request(key: bytes, range_end: bytes | None, start_revision: int, *, prev_kv: bool,
                   progress_notify: bool) -> dict[str, Any]:
    create: dict[str, Any] = {"key": b64(key), "start_revision": str(start_revision)}
    if range_end is not None:
        create["range_end"] = b64(range_end)
    if prev_kv:
        create["prev_kv"] = True
    if progress_notify:
        create["progress_notify"] = True
    return {"create_request": create}


@asynccontextmanager
async def open_watch(transport: Transport, key: bytes, range_end: bytes | None, start_revision: int, *,
                     idle_timeout: float, prev_kv: bool = False,
                     progress_notify: bool = True) -> AsyncIterator[WatchStream]:
    """Open a watch on the first endpoint that confirms it ("created" within the request deadline).

    Raises:
        EtcdUnavailable: no endpoint confirmed the watch.
        AuthError: refused twice, the second time with a fresh token.
        Compacted: ``start_revision`` is compacted (raised by the first iteration).
    """
    body = create_request(key, range_end, start_revision, prev_kv=prev_kv, progress_notify=progress_notify)
    attempts: list[EtcdError] = []
    for endpoint in transport.order():
        try:
            held, stream = await _open_on(transport, endpoint, body, start_revision, idle_timeout)
        except EndpointDown as exc:
            attempts.append(exc)
            continue
        transport.prefer(endpoint)
        async with held:
            yield stream
        return
    raise EtcdUnavailable(attempts)


async def _open_on(transport: Transport, endpoint: str, body: dict[str, Any], start_revision: int,
                   idle_timeout: float) -> tuple[AsyncExitStack, WatchStream]:
    """The open stream on ``endpoint`` (and the stack that closes it), logging in again once when
    the watch is refused: an expired token gets "permission denied" on a watch."""
    for last_try in (False, True):
        held = AsyncExitStack()
        try:
            response = await held.enter_async_context(transport.stream(endpoint, WATCH, body))
            stream = WatchStream(endpoint, response, start_revision, idle_timeout)
            await stream.wait_created(transport.settings.request_timeout)
            return held, stream
        except AuthError:
            await held.aclose()
            if last_try or not transport.auth_enabled:
                raise
            transport.forget_token()
        except BaseException:
            await held.aclose()
            raise
    raise AssertionError("unreachable")
