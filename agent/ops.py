"""One function per op: a decoded request in, a result dict out, or a ProtocolError.

Reading ops are synchronous and touch only the current snapshot, so a batch of pipelined
requests runs without yielding to the event loop. Ops that change state (reload, set,
delete) are async and go through the reloader's lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from protocol.errors import BadRequest, ProtocolError, ReadOnly, ReloadFailed
from protocol.messages import json_type

from .evaluation import NO_DEFAULT, evaluate
from .peer import Peer
from .store import iso_time as _iso

VALUE_TYPES = frozenset({"boolean", "string", "integer", "float", "object"})


class Conn(Protocol):
    peer: Peer
    subscription: Any


class AppLike(Protocol):  # what ops need of agent.app.App, without importing the server layer
    store: Any
    reloader: Any
    stats: Any
    writer: Any
    version: str
    read_only_reason: str

    def may_write(self, peer: Peer) -> bool: ...

    def require_write(self, peer: Peer, op: str, flag: str | None = None) -> None: ...

    def audit_refusal(self, peer: Peer, op: str, flag: str | None, why: str) -> None: ...


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
_EVALUATE_FIELDS = frozenset({"op", "id", "flag", "context", "type", "default"})
_EVALUATE_ALL_FIELDS = frozenset({"op", "id", "context"})


def _context(req: dict) -> dict | None:
    context = req.get("context")
    if context is None or type(context) is dict:
        return context
    raise BadRequest(f"\"context\" must be an object, not {json_type(context)}")


def op_ping(app: AppLike, conn: Conn, req: dict) -> dict:
    if not _NO_ARGS.issuperset(req):
        _only(req, _NO_ARGS)
    return {"revision": app.store.snapshot.revision}


def op_evaluate(app: AppLike, conn: Conn, req: dict) -> dict:
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
    context = _context(req)
    snap = app.store.snapshot
    res = evaluate(snap.flags, key, context, expected_type=value_type, default=req.get("default", NO_DEFAULT))
    if res.error_code is not None:
        raise ProtocolError(res.error_message or res.error_code, code=res.error_code)
    app.stats.evaluations[key] += 1
    out = {"key": key, "value": res.value, "variant": res.variant, "reason": res.reason,
           "metadata": res.metadata, "revision": snap.revision}
    if res.value is NO_DEFAULT:
        del out["value"]
    return out


def op_evaluate_all(app: AppLike, conn: Conn, req: dict) -> dict:
    if not _EVALUATE_ALL_FIELDS.issuperset(req):
        _only(req, _EVALUATE_ALL_FIELDS)
    context = _context(req)
    snap = app.store.snapshot
    flags = snap.flags
    results: dict[str, Any] = {}
    for key in flags:
        res = evaluate(flags, key, context)
        if res.error_code is not None:
            results[key] = {"error": {"code": res.error_code, "message": res.error_message or res.error_code}}
        elif res.value is NO_DEFAULT:
            results[key] = {"variant": res.variant, "reason": res.reason, "metadata": res.metadata}
        else:
            results[key] = {"value": res.value, "variant": res.variant, "reason": res.reason, "metadata": res.metadata}
    return {"revision": snap.revision, "flags": results}


def op_health(app: AppLike, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    store = app.store
    snap = store.snapshot
    sources = []
    for s in snap.sources:
        err = store.errors.get(s.path)
        sources.append({
            "path": s.path,
            "loaded": s.loaded,
            "format": s.format,
            "flag_count": len(s.flags),
            "content_hash": s.content_hash,
            "error": err.to_wire() if err else None,
        })
    problems = [
        {"source": p.source, "flag": p.flag, "path": p.path, "message": p.message} for p in snap.problems
    ]
    degraded = store.degraded or bool(problems)
    return {
        "status": "degraded" if degraded else "ok",
        "revision": snap.revision,
        "flag_count": len(snap.flags),
        "sources": sources,
        "loaded_at": _iso(snap.loaded_at),
        "last_error": store.last_error.to_wire() if store.last_error else None,
        "problems": problems,
        "uptime_s": app.stats.uptime(),
        "version": app.version,
    }


def op_stats(app: AppLike, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    return app.stats.to_wire(app.store.reloads_ok, app.store.reloads_failed, app.store.subscriber_count)


def op_help(app: AppLike, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    return {"ops": dict(HELP)}


def op_subscribe(app: AppLike, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    if conn.subscription is not None:
        raise BadRequest("this connection is already subscribed")
    conn.subscription = app.store.subscribe()
    return {"revision": app.store.snapshot.revision}


def require_writer(app: AppLike, conn: Conn, op: str, flag: str | None = None) -> None:
    app.require_write(conn.peer, op, flag)  # the writer checks with the same method


async def op_reload(app: AppLike, conn: Conn, req: dict) -> dict:
    _only(req, _NO_ARGS)
    require_writer(app, conn, "reload")
    result = await app.reloader.reload("reload op")
    if result.errors:
        raise ReloadFailed(
            "; ".join(result.errors) + f" (still serving revision {result.revision})"
        )
    return {"revision": result.revision, "changed": result.changed}


def _read_only(app: AppLike, conn: Conn, op: str, req: dict) -> ReadOnly:
    flag = req.get("flag") if type(req.get("flag")) is str else None
    require_writer(app, conn, op, flag)
    app.audit_refusal(conn.peer, op, flag, app.read_only_reason)
    return ReadOnly(app.read_only_reason)


async def op_set(app: AppLike, conn: Conn, req: dict) -> dict:
    if app.writer is None:
        raise _read_only(app, conn, "set", req)
    return await app.writer.handle_set(conn.peer, req)


async def op_delete(app: AppLike, conn: Conn, req: dict) -> dict:
    if app.writer is None:
        raise _read_only(app, conn, "delete", req)
    return await app.writer.handle_delete(conn.peer, req)


SYNC_OPS: dict[str, SyncOp] = {
    "ping": op_ping,
    "evaluate": op_evaluate,
    "evaluate_all": op_evaluate_all,
    "health": op_health,
    "stats": op_stats,
    "help": op_help,
    "subscribe": op_subscribe,
}

ASYNC_OPS: dict[str, AsyncOp] = {
    "reload": op_reload,
    "set": op_set,
    "delete": op_delete,
}

HELP: dict[str, str] = {
    "ping": "liveness: answers {revision}",
    "health": "status ok/degraded, revision, sources and the last load error",
    "evaluate": "evaluate one flag: {flag, context?, type?, default?}",
    "evaluate_all": "evaluate every flag for a context: {context?}",
    "set": "create or change a flag: {flag, definition | enabled/rollout_percentage/allowed_users, if_revision?}",
    "delete": "delete a flag: {flag, if_revision?}",
    "subscribe": "receive change events on this connection",
    "reload": "re-read the flag sources now",
    "stats": "request, evaluation, reload and connection counters",
    "help": "this list",
}

__all__ = ["SYNC_OPS", "ASYNC_OPS", "HELP", "require_writer"]
