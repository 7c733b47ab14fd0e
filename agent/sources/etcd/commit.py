"""A flagsock write as one etcd transaction, and what to do when its answer is lost.

The transaction puts or deletes the flag's key and rewrites the prefix's ``.written`` marker
(who, when, a random write id). With ``if_revision`` R it holds only if no key under the prefix
was changed after R: a compare of the whole prefix's ``mod_revision`` against R + 1, which the
marker extends to deletes (a deleted key leaves no mod_revision behind; the marker does).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import orjson
import trio

from agent.sources.etcd.errors import EndpointDown, EtcdError, EtcdUnavailable, OutcomeUnknown
from agent.sources.etcd.gateway import EtcdGateway
from agent.sources.etcd.layout import EtcdLocation
from agent.sources.etcd.txn import Compare, Op, Put

log = logging.getLogger("flagsock.etcd")


class WriteConflict(EtcdError):
    """``if_revision`` did not hold: something under the prefix changed after it."""


async def commit(gateway: EtcdGateway, location: EtcdLocation, op: Op, if_revision: int | None,
                 by: dict[str, Any], *, resolve_timeout: float) -> int:
    """Apply ``op`` and rewrite the ``.written`` marker in one transaction; the revision it made.

    Raises:
        WriteConflict: ``if_revision`` did not hold; nothing was written.
        RequestTooLarge, EtcdUnavailable, AuthError, EtcdRequestError: nothing was written.
        OutcomeUnknown: the answer was lost and ``resolve_timeout`` passed without telling.
    """
    compare = []
    if if_revision is not None:
        compare.append(Compare.mod(location.prefix, "LESS", if_revision + 1, location.range_end))
    write_id = secrets.token_hex(8)
    ops = [op, Put(location.written_key, orjson.dumps({"id": write_id, "by": by, "at": time.time()}))]
    try:
        result = await gateway.txn(compare, ops)
    except OutcomeUnknown as lost:
        with trio.move_on_after(resolve_timeout):
            return await _resolve(gateway, location, write_id, if_revision, compare, ops, lost)
        raise lost from None
    if not result.succeeded:
        raise _conflict(gateway, location, if_revision, result.revision)
    return result.revision


async def _resolve(gateway: EtcdGateway, location: EtcdLocation, write_id: str, if_revision: int | None,
                   compare: list[Compare], ops: list[Op], lost: OutcomeUnknown) -> int:
    """Find out what became of a write whose answer was lost, and finish it exactly once.

    The ``.written`` marker tells: if it holds this write's id, the write is committed. If it
    holds another, the write is sent again on condition that the marker is still that one, so
    the first attempt and the second cannot both commit; should the first land meanwhile, the
    next look at the marker finds it. Runs until it knows (the caller bounds it).

    Raises:
        WriteConflict: the write's own compares no longer hold.
    """
    while True:
        try:
            marker = await gateway.range(location.written_key)
            [kv] = marker.kvs or [None]
            if kv is not None and _write_id(kv.value) == write_id:
                return kv.mod_revision
            seen = kv.mod_revision if kv is not None else 0
            again = await gateway.txn([*compare, Compare.mod(location.written_key, "EQUAL", seen)], ops)
            if again.succeeded:
                return again.revision
            if compare and not (await gateway.txn(compare)).succeeded:
                raise _conflict(gateway, location, if_revision, again.revision)
        except (EndpointDown, EtcdUnavailable, OutcomeUnknown) as exc:
            log.info("%s: a write's answer was lost (%s); asking again: %s", location.url, lost, exc)
            await trio.sleep(0.1)


def _conflict(gateway: EtcdGateway, location: EtcdLocation, if_revision: int | None, now: int) -> WriteConflict:
    return WriteConflict(gateway.endpoint, f"a key under {location.prefix.decode()} changed after revision "
                                           f"{if_revision} (etcd is at {now})")


def _write_id(value: bytes) -> str | None:
    try:
        marker = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return marker.get("id") if isinstance(marker, dict) else None
