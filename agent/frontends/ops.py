"""One function per op: a decoded request in, a result dict out, or a ProtocolError.

Reading ops are synchronous and touch only the current snapshot, so a batch of pipelined
requests runs without yielding to the event loop. Ops that change state (reload, set,
delete) are async and go through the reloader's lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from agent.engine.evaluate import NO_DEFAULT, evaluate, prepare_context
from agent.engine.explain import explain
from agent.frontends.service import Service
from agent.store.peer import Peer
from agent.store.snapshot import SelectorError, Snapshot, flag_set_of
from agent.store.store import iso_time as _iso
from protocol.errors import BadRequest, ProtocolError, ReloadFailed
from protocol import messages
from protocol.messages import json_type

VALUE_TYPES = frozenset(messages.VALUE_TYPES)


class Conn(Protocol):
    peer: Peer
    subscription: Any


SyncOp = Callable[[Any, Any, dict], dict]
AsyncOp = Callable[[Any, Any, dict], Awaitable[dict]]


def _only(req: dict, allowed: frozenset[str]) -> None:
    for key in req:
        if key not in allowed:
            raise BadRequest(
                f"unknown field {key!r} for op {req['op']!r}; it takes {', '.join(sorted(allowed - _ENVELOPE)) or 'no arguments'}"
            )


_ENVELOPE = frozenset({"op", "id"})
_NO_ARGS = _ENVELOPE
_EVALUATE_FIELDS = frozenset({"op", "id", "flag", "context", "type", "default", "selector"})
_EVALUATE_ALL_FIELDS = frozenset({"op", "id", "context", "selector"})
_SUBSCRIBE_FIELDS = frozenset({"op", "id", "selector"})
_HISTORY_FIELDS = frozenset({"op", "id", "flag", "limit"})


def _selector(req: dict) -> str | None:
    selector = req.get("selector")
    if selector is None or type(selector) is str:
        return selector
    raise BadRequest(f"\"selector\" must be a string like \"flagSetId=ID\", not {json_type(selector)}")


def flag_set_of_request(selector: str) -> str:
    try:
        return flag_set_of(selector)
    except SelectorError as exc:
        raise BadRequest(str(exc)) from None


def selected_flags(snap: Snapshot, selector: str | None) -> Mapping[str, Any]:
    """The flags a request sees: every flag, or one flag set's (BAD_REQUEST for a bad selector)."""
    try:
        return snap.select(selector)
    except SelectorError as exc:
        raise BadRequest(str(exc)) from None


def _context(service: Service, req: dict) -> dict | None:
    """The request's context over the host's (``--context-value``): the request wins on a key."""
    context = req.get("context")
    if context is not None and type(context) is not dict:
        raise BadRequest(f"\"context\" must be an object, not {json_type(context)}")
    base = service.context_values
    if not base:
        return context
    return {**base, **context} if context else dict(base)


def op_ping(service: Service, conn: Conn, req: dict) -> dict:
    if not _NO_ARGS.issuperset(req):
        _only(req, _NO_ARGS)
    return {"revision": service.store.snapshot.revision}


def op_evaluate(service: Service, conn: Conn, req: dict) -> dict:
    if not _EVALUATE_FIELDS.issuperset(req):
        _only(req, _EVALUATE_FIELDS)
    key = req.get("flag")
    if type(key) is not str or not key:
        if "flag" not in req:
            raise BadRequest("evaluate needs \"flag\": the key of the flag to evaluate")
        raise BadRequest(f"\"flag\" must be a non-empty string, not {json_type(key)}")
    value_type = req.get("type")
    if value_type is not None and value_type not in VALUE_TYPES:
        raise BadRequest(
            f"\"type\" must be one of {', '.join(sorted(VALUE_TYPES))}, not {value_type!r}"
            if isinstance(value_type, str) else f"\"type\" must be a string, not {json_type(value_type)}"
        )
    context = _context(service, req)
    snap = service.store.snapshot
    flags = snap.flags if "selector" not in req else selected_flags(snap, _selector(req))
    res = evaluate(flags, key, context, expected_type=value_type, default=req.get("default", NO_DEFAULT))
    if res.error_code is not None:
        service.stats.count_error(key, res.error_code)
        raise ProtocolError(res.error_message or res.error_code, code=res.error_code)
    service.stats.usage[(key, res.variant, res.reason)] += 1
    out = {"key": key, "value": res.value, "variant": res.variant, "reason": res.reason,
           "metadata": res.metadata, "revision": snap.revision}
    if res.value is NO_DEFAULT:
        del out["value"]
    return out


def op_explain(service: Service, conn: Conn, req: dict) -> dict:
    """evaluate's answer plus ``trace``; an evaluation error is evaluate's error with the trace in it.
    Not counted as usage: asking why is not asking for the flag."""
    if not _EVALUATE_FIELDS.issuperset(req):
        _only(req, _EVALUATE_FIELDS)
    key = req.get("flag")
    if type(key) is not str or not key:
        if "flag" not in req:
            raise BadRequest("explain needs \"flag\": the key of the flag to explain")
        raise BadRequest(f"\"flag\" must be a non-empty string, not {json_type(key)}")
    value_type = req.get("type")
    if value_type is not None and value_type not in VALUE_TYPES:
        raise BadRequest(f"\"type\" must be one of {', '.join(sorted(VALUE_TYPES))}, not {value_type!r}")
    context = _context(service, req)
    snap = service.store.snapshot
    flags = snap.flags if "selector" not in req else selected_flags(snap, _selector(req))
    found = explain(flags, key, context, expected_type=value_type, default=req.get("default", NO_DEFAULT))
    res = found.resolution
    if res.error_code is not None:
        raise ProtocolError(res.error_message or res.error_code, code=res.error_code,
                            details={"trace": found.trace, "revision": snap.revision})
    out = {"key": key, "value": res.value, "variant": res.variant, "reason": res.reason,
           "metadata": res.metadata, "revision": snap.revision, "trace": found.trace}
    if res.value is NO_DEFAULT:
        del out["value"]
    return out


def op_evaluate_all(service: Service, conn: Conn, req: dict) -> dict:
    if not _EVALUATE_ALL_FIELDS.issuperset(req):
        _only(req, _EVALUATE_ALL_FIELDS)
    context = prepare_context(_context(service, req))  # once for every flag, not copied per flag
    snap = service.store.snapshot
    flags = snap.flags if "selector" not in req else selected_flags(snap, _selector(req))
    results: dict[str, Any] = {}
    usage = service.stats.usage
    for key in flags:
        res = evaluate(flags, key, context)
        if res.error_code is not None:
            service.stats.count_error(key, res.error_code)
            results[key] = {"error": {"code": res.error_code, "message": res.error_message or res.error_code}}
            continue
        usage[(key, res.variant, res.reason)] += 1
        if res.value is NO_DEFAULT:
            results[key] = {"variant": res.variant, "reason": res.reason, "metadata": res.metadata}
        else:
            results[key] = {"value": res.value, "variant": res.variant, "reason": res.reason, "metadata": res.metadata}
    return {"revision": snap.revision, "flags": results}


def op_health(service: Service, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    store = service.store
    snap = store.snapshot
    live = {source.name: source.status() for source in service.reloader.sources}
    sources = []
    stale = False
    for s in snap.sources:
        err = store.errors.get(s.path)
        status = live.get(s.path, {})
        stale = stale or bool(status.get("stale"))
        fetched = status.get("fetched_at")
        sources.append({
            "path": s.path,
            "kind": status.get("kind", "file"),
            "loaded": s.loaded,
            "format": s.format,
            "flag_count": len(s.flags),
            "content_hash": s.content_hash,
            "error": err.to_wire() if err else None,
            **({"stale": bool(status.get("stale")), "fetched_at": _iso(fetched) if fetched else None}
               if "stale" in status else {}),
        })
    problems = [
        {"source": p.source, "flag": p.flag, "path": p.path, "message": p.message} for p in snap.problems
    ]
    degraded = store.degraded or bool(problems) or stale
    return {
        "status": "degraded" if degraded else "ok",
        "revision": snap.revision,
        "flag_count": len(snap.flags),
        "sources": sources,
        "loaded_at": _iso(snap.loaded_at),
        "last_error": store.last_error.to_wire() if store.last_error else None,
        "problems": problems,
        "uptime_s": service.stats.uptime(),
        "version": service.version,
        "history": store.history.describe(),
    }


def op_stats(service: Service, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    out = service.stats.to_wire(service.store.reloads_ok, service.store.reloads_failed, service.store.subscriber_count)
    out["usage"] = service.stats.usage_report(service.store.snapshot.flags)
    return out


def op_history(service: Service, conn: Conn, req: dict) -> dict:
    _only(req, _HISTORY_FIELDS)
    flag = req.get("flag")
    if flag is not None and (type(flag) is not str or not flag):
        raise BadRequest(f"\"flag\" must be a non-empty string, not {json_type(flag)}")
    limit = req.get("limit", 20)
    if type(limit) is not int or limit < 1:
        raise BadRequest(f"\"limit\" must be a whole number of at least 1, not {limit!r}")
    return {"changes": service.store.history.changes(flag, limit)}


def op_help(service: Service, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    return {"ops": dict(HELP)}


def op_subscribe(service: Service, conn: Conn, req: dict) -> dict:
    _only(req, _SUBSCRIBE_FIELDS)
    if conn.subscription is not None:
        raise BadRequest("this connection is already subscribed")
    selector = _selector(req)
    flag_set = None if selector is None else flag_set_of_request(selector)
    conn.subscription = service.store.subscribe(flag_set)
    return {"revision": service.store.snapshot.revision}


async def op_reload(service: Service, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    service.require_write(conn.peer, "reload")
    result = await service.reloader.reload("reload op")
    if result.errors:
        raise ReloadFailed(
            "; ".join(result.errors) + f" (still serving revision {result.revision})"
        )
    return {"revision": result.revision, "changed": result.changed}


def _named_flag(req: dict) -> str | None:
    flag = req.get("flag")
    return flag if type(flag) is str else None


async def op_set(service: Service, conn: Conn, req: dict) -> dict:
    with _counted_write(service, "set"):
        writer = service.require_writer(conn.peer, "set", _named_flag(req))
        return await writer.handle_set(conn.peer, req)


async def op_delete(service: Service, conn: Conn, req: dict) -> dict:
    with _counted_write(service, "delete"):
        writer = service.require_writer(conn.peer, "delete", _named_flag(req))
        return await writer.handle_delete(conn.peer, req)


@contextlib.contextmanager
def _counted_write(service: Service, op: str) -> Iterator[None]:
    """Count a write as ``ok`` or ``refused`` (any error answer) for stats and /metrics."""
    try:
        yield
    except Exception:
        service.stats.writes[(op, "refused")] += 1
        raise
    service.stats.writes[(op, "ok")] += 1


SYNC_OPS: dict[str, SyncOp] = {
    "ping": op_ping,
    "evaluate": op_evaluate,
    "evaluate_all": op_evaluate_all,
    "health": op_health,
    "stats": op_stats,
    "help": op_help,
    "subscribe": op_subscribe,
    "explain": op_explain,
    "history": op_history,
}

ASYNC_OPS: dict[str, AsyncOp] = {
    "reload": op_reload,
    "set": op_set,
    "delete": op_delete,
}

HELP: dict[str, str] = {
    "ping": "liveness: answers {revision}",
    "health": "status ok/degraded, revision, sources and the last load error",
    "evaluate": "evaluate one flag: {flag, context?, type?, default?, selector?}",
    "evaluate_all": "evaluate every flag for a context: {context?, selector?}",
    "set": "create or change a flag: {flag, definition | enabled/rollout_percentage/allowed_users, if_revision?}",
    "delete": "delete a flag: {flag, if_revision?}",
    "subscribe": "receive change events on this connection: {selector?}",
    "reload": "re-read the flag sources now",
    "stats": "request, evaluation, reload and connection counters",
    "help": "this list",
    "explain": "evaluate one flag and trace how the answer was reached: {flag, context?, type?, default?}",
    "history": "the newest changes of what is served, who made them, each flag before and after: {flag?, limit?}",
}

__all__ = ["SYNC_OPS", "ASYNC_OPS", "HELP"]
