"""The OFREP change stream (ADR-0008): ``text/event-stream`` telling providers to re-fetch.

After every change of the served flags the stream sends::

    id: <process>-<revision>
    event: message
    data: {"type": "refetchEvaluation", "etag": "\\"<tag>\\"", "lastModified": <unix seconds>}

The events are notices, not data, so one ``refetchEvaluation`` covers any number of missed
changes: a client that reconnects with a ``Last-Event-ID`` other than the current one (older,
from a former run of the agent, or garbled) is sent one at once; one that is current is sent
nothing until the next change. Idle streams get a comment line every ``keepalive`` seconds, so
proxies and the client can tell a quiet stream from a dead one.

Each stream is one subscriber of the store's fan-out, with the same bounded queue as an NDJSON
``subscribe``: a client that does not read falls behind, its subscription overflows and the
stream ends; it reconnects and re-fetches, which is all it would have done with the events.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs

import orjson
import trio

from agent.store.snapshot import SelectorError, flag_set_of

from .ofrep import Ofrep, request_selector
from .routing import Request, Response, StreamResponse, StreamSink, error_response

__all__ = ["EventStream"]

CONTENT_TYPE = "text/event-stream; charset=utf-8"


class EventStream:
    """The SSE endpoint's handler.

    Args:
        service: ``store`` (``snapshot``, ``subscribe()``, ``unsubscribe()``) is read.
        ofrep: the OFREP handlers, whose configuration tag the events carry.
        keepalive: seconds between comment lines on an idle stream.
        retry_ms: the reconnection delay suggested to clients.
    """

    def __init__(self, service: Any, ofrep: Ofrep, *, keepalive: float = 15.0, retry_ms: int = 1000) -> None:
        self.service = service
        self.ofrep = ofrep
        self.keepalive = keepalive
        self.retry_ms = retry_ms
        #: Event ids name the run of the agent: revisions restart with it.
        self.run_id = os.urandom(4).hex()
        self.open_streams = 0

    def event_id(self, revision: int) -> str:
        return f"{self.run_id}-{revision}"

    def handle(self, request: Request) -> Response | StreamResponse:
        query = parse_qs(request.query, keep_blank_values=True)
        selector = f"flagSetId={query['flagSetId'][-1]}" if "flagSetId" in query else request_selector(request)
        try:
            if selector is not None:
                flag_set_of(selector)
        except SelectorError as exc:
            return error_response(400, "GENERAL", str(exc))
        last_id = request.headers.get("last-event-id")

        async def run(sink: StreamSink) -> None:
            await self._run(sink, selector, last_id)

        return StreamResponse(200, CONTENT_TYPE, run, (("x-accel-buffering", "no"),))

    def _event(self, selector: str | None) -> bytes:
        snap = self.service.store.snapshot
        data = {"type": "refetchEvaluation", "etag": f'"{self.ofrep.config_tag(snap.revision, selector)}"',
                "lastModified": int(snap.loaded_at)}
        return b"id: %s\nevent: message\ndata: %s\n\n" % (self.event_id(snap.revision).encode(), orjson.dumps(data))

    async def _run(self, sink: StreamSink, selector: str | None, last_id: str | None) -> None:
        store = self.service.store
        sub = store.subscribe()  # before reading the revision, so that no change falls between
        self.open_streams += 1
        try:
            sent = store.snapshot.revision
            # The hello's id sets where the client stands (SSE keeps an id even without data),
            # so a reconnect after a quiet spell replays nothing.
            hello = b"retry: %d\nid: %s\n: flagsock change stream, revision %d\n\n" % (
                self.retry_ms, self.event_id(sent).encode(), sent)
            if last_id is not None and last_id.strip() != self.event_id(sent):
                hello += self._event(selector)
            await sink.send(hello)
            while True:
                event = None
                with trio.move_on_after(self.keepalive):  # only the wait: a send is never cut short
                    try:
                        event = await sub.receive.receive()
                    except (trio.EndOfChannel, trio.ClosedResourceError):
                        return  # overflowed (the client was not reading) or the agent is stopping
                if event is None:
                    await sink.send(b": keep-alive\n\n")
                elif event.get("event") == "changed" and store.snapshot.revision > sent:
                    sent = store.snapshot.revision
                    await sink.send(self._event(selector))
        finally:
            self.open_streams -= 1
            store.unsubscribe(sub)
