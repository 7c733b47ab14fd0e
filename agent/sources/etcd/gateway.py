"""A client for etcd's v3 JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``) under Trio.

The gRPC clients on PyPI are stale or asyncio-only; the gateway is plain HTTP/1.1 and JSON, which
httpx speaks under Trio. Usage::

    async with EtcdGateway(EtcdSettings(("127.0.0.1:2379",))) as etcd:
        listing = await etcd.range_prefix(b"/flags/")
        async with etcd.watch(b"/flags/", prefix_end(b"/flags/"), listing.revision + 1) as stream:
            async for response in stream:
                ...

Keys and values are bytes. Reads and watches fail over to the next endpoint by themselves; a write
fails over only when it was certainly not applied (see ``errors``).

Resource handling: the gateway owns one ``httpx.AsyncClient`` (a connection pool per endpoint),
closed when the ``async with`` block ends; each watch owns its streaming response until its own
``async with`` ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from agent.sources.etcd.codec import KeyValue, RangeResult, as_int, b64, header_revision, prefix_end
from agent.sources.etcd.errors import Compacted, EtcdRequestError
from agent.sources.etcd.refusals import OUT_OF_RANGE
from agent.sources.etcd.settings import EtcdSettings
from agent.sources.etcd.transport import Transport, make_client
from agent.sources.etcd.txn import Compare, Delete, Op, Put, TxnResult, check_size, txn_body, txn_result
from agent.sources.etcd.watch import WatchStream, open_watch

#: Keys per page when listing a prefix: bounded answers, all pages read at one revision.
PAGE_SIZE = 1000


class EtcdGateway:
    def __init__(self, settings: EtcdSettings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client or make_client(settings)
        self._transport = Transport(settings, self._client)

    async def __aenter__(self) -> "EtcdGateway":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def endpoint(self) -> str:
        """The endpoint that answered last (tried first next time)."""
        return self._transport.order()[0]

    async def call(self, path: str, body: dict[str, Any], *, write: bool = False) -> dict[str, Any]:
        """Any gateway call (``/v3/auth/enable``, ``/v3/maintenance/status``...), with failover and auth."""
        return await self._transport.call(path, body, write=write)

    async def range(self, key: bytes, range_end: bytes | None = None, *, revision: int = 0, limit: int = 0,
                    count_only: bool = False) -> RangeResult:
        """Keys in ``[key, range_end)`` (just ``key`` without ``range_end``), linearizable.

        Raises:
            Compacted: ``revision`` is older than the oldest kept.
        """
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if count_only:
            body["count_only"] = True
        try:
            answer = await self._transport.call("/v3/kv/range", body)
        except EtcdRequestError as exc:
            if exc.grpc_code == OUT_OF_RANGE and "compacted" in exc.detail:
                raise Compacted(exc.endpoint, revision, 0) from exc
            raise
        kvs = tuple(KeyValue.from_json(kv) for kv in answer.get("kvs") or ())
        return RangeResult(header_revision(answer), kvs, as_int(answer.get("count"), "count"),
                           bool(answer.get("more", False)))

    async def range_prefix(self, prefix: bytes, *, page_size: int = PAGE_SIZE) -> RangeResult:
        """Every key under ``prefix``, read in pages all at the revision of the first page."""
        end = prefix_end(prefix)
        first = await self.range(prefix, end, limit=page_size)
        kvs = list(first.kvs)
        more = first.more
        while more:
            page = await self.range(kvs[-1].key + b"\0", end, revision=first.revision, limit=page_size)
            kvs.extend(page.kvs)
            more = page.more
        return RangeResult(first.revision, tuple(kvs), len(kvs))

    async def txn(self, compare: Sequence[Compare] = (), success: Sequence[Op] = (),
                  failure: Sequence[Op] = ()) -> TxnResult:
        """One transaction: if every compare holds, ``success`` runs, else ``failure``.

        Raises:
            RequestTooLarge: the transaction is over the cluster's request limit (not sent).
            OutcomeUnknown: sent, but the answer was lost: it may have been committed.
            EtcdUnavailable: no endpoint took it (nothing was applied).
        """
        check_size(self.endpoint, [*compare, *success, *failure], self.settings.max_request_bytes)
        answer = await self._transport.call("/v3/kv/txn", txn_body(compare, success, failure), write=True)
        return txn_result(answer)

    async def put(self, key: bytes, value: bytes) -> int:
        """Write one key; the revision that wrote it."""
        return (await self.txn(success=[Put(key, value)])).revision

    async def delete(self, key: bytes, range_end: bytes | None = None) -> TxnResult:
        return await self.txn(success=[Delete(key, range_end)])

    async def compact(self, revision: int, *, physical: bool = True) -> None:
        """Forget every revision before ``revision`` (``physical``: wait until it is done)."""
        await self._transport.call("/v3/kv/compaction", {"revision": str(revision), "physical": physical},
                                   write=True)

    async def revision(self) -> int:
        """The store's current revision."""
        return header_revision(await self._transport.call("/v3/kv/range", {"key": b64(b"\0"), "count_only": True}))

    def watch(self, key: bytes, range_end: bytes | None, start_revision: int, *, prev_kv: bool = False,
              idle_timeout: float | None = None) -> AbstractAsyncContextManager[WatchStream]:
        """Watch ``[key, range_end)`` from ``start_revision`` on: ``async with etcd.watch(...) as stream``.

        See ``watch.WatchStream`` for what iteration yields and raises; reopen from
        ``stream.next_revision`` after an ``EndpointDown`` and nothing is missed.
        """
        idle = self.settings.watch_idle_timeout if idle_timeout is None else idle_timeout
        return open_watch(self._transport, key, range_end, start_revision, idle_timeout=idle, prev_kv=prev_kv)
