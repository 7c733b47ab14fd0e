"""A flag file fetched over HTTP(S) and fetched again every ``poll_interval`` (flagd's http sync).

The fetch runs on the event loop (httpx under Trio) with ``If-None-Match``, so an unchanged file
costs a 304. What was fetched is parsed by :meth:`HttpSource.load` like any other version, and
only a version that parses becomes the last good one, kept on disk under ``--state-dir``: an
agent started while the server is unreachable serves it at once, marked stale, and catches up
when the server answers. The source is read-only: writes are refused with the reason.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import trio

from agent.sources.base import Changed, LoadOptions, SourceOutcome, SourceState, content_hash
from agent.sources.cache import Cached, LastGood
from agent.sources.files import parse_source

log = logging.getLogger("flagsock.http_source")

DEFAULT_POLL_SECONDS = 5.0
DEFAULT_TIMEOUT = 10.0
#: How long the first fetch may hold up readiness (not serving: the socket answers before).
FIRST_FETCH_SECONDS = 2.0
#: The largest flag file accepted over HTTP.
DEFAULT_MAX_BYTES = 16 << 20


def is_http(name: str) -> bool:
    return name.startswith(("http://", "https://"))


class HttpSource:
    """Args:
    url: the flag file's address.
    poll_interval: seconds between fetches (with a little jitter, so a fleet does not
        fetch in step).
    state_dir: where the last good version is kept (None: nowhere).
    """

    read_only_reason = "is fetched over HTTP and cannot be written by this agent"

    def __init__(self, url: str, *, poll_interval: float = DEFAULT_POLL_SECONDS, state_dir: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.name = url
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._cache = LastGood(state_dir, url)
        kept = self._cache.read()
        #: The newest version fetched (or kept from an earlier run), not yet known to parse.
        self._latest: Cached | None = kept
        self._from_disk = kept is not None
        self._error: str | None = None if kept else f"{url}: not fetched yet"
        self._stored_hash = content_hash(kept.data) if kept else None

    def __repr__(self) -> str:
        return f"HttpSource({self.name!r})"

    # -- what the store asks ---------------------------------------------------------------

    def load(self, previous: SourceState, options: LoadOptions) -> SourceOutcome:
        latest, error = self._latest, self._error
        if latest is None:
            return SourceOutcome(previous, error)
        digest = content_hash(latest.data)
        if digest == previous.content_hash:
            return SourceOutcome(previous, error)
        outcome = parse_source(self.name, latest.data, digest, previous, options)
        if outcome.error is not None:
            return outcome
        if digest != self._stored_hash:
            try:
                self._cache.write(latest)
                self._stored_hash = digest
            except OSError as exc:
                log.warning("cannot keep the last good version of %s in the state directory: %s",
                            self.name, exc.strerror or exc)
        return SourceOutcome(outcome.state, error)

    def status(self) -> dict[str, Any]:
        """What health shows of this source beyond its content: is it current, and since when."""
        fetched = self._latest.fetched_at if self._latest is not None else None
        return {"kind": "http", "stale": self._from_disk or self._error is not None,
                "fetched_at": fetched, "poll_interval_s": self._poll_interval}

    # -- fetching ---------------------------------------------------------------------------

    async def watch(self, changed: Changed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        import httpx  # only agents with an HTTP source pay for the import

        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=True, max_redirects=5,
                                     headers={"User-Agent": "flagsock"}) as client:
            # The socket already answers (from the kept version, or empty); the first fetch gets
            # a short while before the agent calls itself ready, so READY=1 usually means current.
            with trio.move_on_after(FIRST_FETCH_SECONDS):
                await self._fetch_and_tell(client, changed)
            task_status.started()
            while True:
                await trio.sleep(self._poll_interval * random.uniform(0.9, 1.1))
                await self._fetch_and_tell(client, changed)

    async def _fetch_and_tell(self, client: Any, changed: Changed) -> None:
        before = (self._error, self._latest.data if self._latest else None, self._from_disk)
        await self.fetch(client)
        if (self._error, self._latest.data if self._latest else None, self._from_disk) != before:
            await changed("http fetch")

    async def fetch(self, client: Any) -> None:
        """One fetch: a new version, a 304, or the reason the server could not be read."""
        import httpx

        headers = {}
        if self._latest is not None and self._latest.etag:
            headers["If-None-Match"] = self._latest.etag
        try:
            async with client.stream("GET", self.name, headers=headers) as response:
                if response.status_code == 304 and self._latest is not None:
                    self._succeeded()
                    return
                if response.status_code != 200:
                    self._failed(f"{self.name}: the server answered HTTP {response.status_code} "
                                 f"{response.reason_phrase}".rstrip())
                    return
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        self._failed(f"{self.name}: larger than the limit of {self._max_bytes} bytes; not loaded")
                        return
                etag = response.headers.get("ETag")
        except httpx.HTTPError as exc:
            self._failed(f"{self.name}: cannot fetch: {_describe(exc)}")
            return
        except OSError as exc:
            self._failed(f"{self.name}: cannot fetch: {exc.strerror or exc}")
            return
        self._latest = Cached(data=bytes(body), fetched_at=time.time(), etag=etag)
        self._succeeded()

    def _succeeded(self) -> None:
        if self._error is not None and self._latest is not None:
            log.info("%s answers again", self.name)
        self._error = None
        self._from_disk = False

    def _failed(self, message: str) -> None:
        if message != self._error:
            log.warning("%s", message)
        self._error = message


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
