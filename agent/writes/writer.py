"""``set`` and ``delete``: edit the flag file, validate it whole, write it durably, serve it.

A write holds the reloader's lock from the ``if_revision`` check to the swap, so it is
serialized with reloads and with other writes. The blocking part (re-reading the file, editing,
validating, the fsynced replace) runs in a worker thread, so evaluations never wait for it.
The file is re-read first: an outside edit the watcher has not served yet is either a CONFLICT
(with ``if_revision``) or the base the change is applied to (without).

After the replace the new snapshot is installed directly, with the source's ``content_hash``
equal to the hash of exactly the bytes written; when the watcher then sees the rename, the
loader finds the same hash and neither a second revision nor a ``changed`` event follows.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import attrs
import trio

from agent.engine.formats.decoding import decode_document
from agent.engine.formats.document import FlagFileError, parse_flag_document
from agent.engine.limits import DEFAULT_LIMITS, Limits
from agent.engine.schema import child_path
from agent.sources.base import SourceOutcome, SourceState, content_hash, source_state
from agent.sources.reading import UnreadableFile
from agent.store.loading import build
from agent.store.peer import Peer, who
from agent.store.reloader import Reloader
from agent.store.store import Store
from agent.engine.formats.yaml import is_yaml
from agent.writes.yamledit import YAML_LAYOUT
from agent.writes.request import check_not_overridden, parse_change
from agent.writes.docedit import (
    DEFAULT_LAYOUT,
    detect_layout,
    render,
)
from agent.writes.durable import (
    NOT_WRITABLE_ERRNOS,
    UnsafeReplace,
    read_current,
    replace_durably,
    why_not_writable,
)
from protocol.errors import Conflict, InvalidFlag, ProtocolError, ReadOnly

audit = logging.getLogger("flagsock.audit")


# --- the writer -----------------------------------------------------------------------------

@attrs.frozen
class _Written:
    outcome: SourceOutcome
    wrote: bool


class Writer:
    """Applies ``set``/``delete`` to one flag file of a running agent.

    Who may write is the frontend's question (``Service.require_writer``), asked before this.

    Args:
        store, reloader: what is served, and the lock and swap every change goes through.
        path: the flag file that takes the writes; one of the agent's sources.
        fractional: the bucketing version new rules are checked with.
        limits: the bounds of the flag file, the same the loader keeps (a write cannot make a
            file the agent would then refuse to load).
    """

    def __init__(self, store: Store, reloader: Reloader, path: str, *, fractional: str,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.store = store
        self.reloader = reloader
        self.path = path
        self.fractional = fractional
        self.limits = limits

    async def handle_set(self, peer: Peer, req: dict) -> dict:
        return await self._handle(peer, req, "set")

    async def handle_delete(self, peer: Peer, req: dict) -> dict:
        return await self._handle(peer, req, "delete")

    async def _handle(self, peer: Peer, req: dict, op: str) -> dict:
        named = req.get("flag") if type(req.get("flag")) is str else None
        try:
            flag, if_revision, edit = parse_change(op, req, fractional=self.fractional, where=self.path,
                                                   max_depth=self.limits.max_depth)
            return await self._write(peer, op, flag, if_revision, edit)
        except ProtocolError as exc:
            revision = self.store.snapshot.revision
            audit.warning("refused %s%s from %s at revision %d: %s %s", op, f" of {named!r}" if named else "",
                          peer.describe(), revision, exc.code, exc.message,
                          extra=_fields(peer, op, named, revision, None, exc.code))
            raise

    async def _write(self, peer: Peer, op: str, flag: str, if_revision: int | None, edit: Any) -> dict:
        store = self.store
        reloader = self.reloader
        by = await trio.to_thread.run_sync(who, peer)  # for the history; a user lookup may block
        async with reloader.lock:
            snap = store.snapshot
            before = snap.revision
            if if_revision is not None and if_revision != before:
                raise Conflict(f"revision {before} is served, not {if_revision}; re-read the flag and retry "
                               f"with if_revision {before}")
            served = snap.source(self.path) or SourceState(path=self.path)
            check_not_overridden(snap.sources, self.path, flag)
            # Shielded: once the file may have been replaced, the swap must follow.
            with trio.CancelScope(shield=True):
                written, prepared = await trio.to_thread.run_sync(
                    self._write_and_prepare, snap, served, flag, if_revision, edit)
                del snap, served
                store.record_success(self.path)
                await reloader.install(prepared, parsed=True, by=by)
                del prepared
            after = store.snapshot.revision
        await store.history.flush()  # an acknowledged change is in the history on disk too
        audit.info("%s of %r by %s: revision %d -> %d (%s%s)", op, flag, peer.describe(), before, after,
                   self.path, "" if written.wrote else ", file already held this",
                   extra=_fields(peer, op, flag, before, after, None))
        return {"revision": after}

    def _write_and_prepare(self, snap: Any, served: SourceState, flag: str, if_revision: int | None,
                           edit: Any) -> tuple[_Written, Any]:
        """Blocking: the write, then the snapshot to swap in (merging every source is no job for
        the event loop)."""
        written = self._edit_and_write(served, flag, if_revision, edit)
        outcomes = [written.outcome if s.path == self.path else SourceOutcome(s, None) for s in snap.sources]
        return written, build(outcomes, snap.flags, snap.revision)

    def _edit_and_write(self, served: SourceState, flag: str, if_revision: int | None, edit: Any) -> _Written:
        """Blocking: re-read, edit, validate and replace the file; the outcome to serve."""
        path = self.path
        reason = why_not_writable(path)
        if reason:
            raise ReadOnly(reason)
        try:
            data = read_current(path, self.limits.max_bytes)
        except UnreadableFile as exc:
            raise ReadOnly(f"{path} {exc.reason}; nothing was changed") from None
        moved_on = (content_hash(data) if data is not None else None) != served.content_hash
        if moved_on and if_revision is not None:
            raise Conflict(f"{path} changed on disk after revision {if_revision} was loaded (an outside edit "
                           "the agent has not served yet); re-read the flag and retry")
        doc, layout, text = self._decode(data)
        new_data = render(text, doc, edit(doc), layout)
        try:
            parsed = parse_flag_document(new_data, path, fractional=self.fractional, invalid_flags="reject",
                                         reuse=served, limits=self.limits)
        except FlagFileError as exc:
            raise InvalidFlag(f"the change would make {path} invalid, so nothing was written: "
                              + "; ".join(_where(p, flag) + p.message for p in exc.problems)) from None
        wrote = new_data != data
        if wrote:
            try:
                replace_durably(path, new_data)
            except UnsafeReplace as exc:
                raise ReadOnly(f"{exc}; nothing was changed") from None
            except OSError as exc:
                if exc.errno in NOT_WRITABLE_ERRNOS:
                    raise ReadOnly(f"cannot write {path}: {exc.strerror} (the agent runs as uid {os.geteuid()}); "
                                   "nothing was changed") from None
                raise ProtocolError(f"could not write {path}: {exc.strerror or exc}; nothing was changed") from None
        state = source_state(path, content_hash(new_data), parsed)
        return _Written(SourceOutcome(state, None), wrote)

    def _decode(self, data: bytes | None) -> tuple[dict, Any, str | None]:
        """The file as it is on disk, decoded by the loader's own rules (so a write never edits
        a document the loader refuses to read: too deep, duplicate keys, rounded numbers)."""
        yaml = is_yaml(self.path)
        if data is None or not data.strip():
            return {"flags": {}}, YAML_LAYOUT if yaml else DEFAULT_LAYOUT, None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidFlag(f"{self.path} on disk is not valid UTF-8 ({exc}); fix or replace the file first "
                              f"(the agent still serves revision {self.store.snapshot.revision})") from None
        try:
            doc = decode_document(data, self.path, self.limits)
        except FlagFileError as exc:
            raise InvalidFlag(f"{self.path} on disk cannot be edited: "
                              + "; ".join(f"{p.path}: {p.message}" for p in exc.problems)
                              + f"; fix or replace the file first (the agent still serves revision "
                                f"{self.store.snapshot.revision})") from None
        return doc, YAML_LAYOUT if yaml else detect_layout(text), text


def _fields(peer: Peer, op: str, flag: str | None, before: int, after: int | None, refused: str | None) -> dict:
    """The audit line's facts as separate fields, for the JSON log format."""
    return {"audit_op": op, "audit_flag": flag, "peer_pid": peer.pid, "peer_uid": peer.uid,
            "revision_before": before, "revision_after": after, "refused": refused}


_FLAG_IN_ARRAY = re.compile(r"\$\.flags\[\d+\]")


def _where(problem: Any, flag: str) -> str:
    """A problem's place, named as the request field too when it is in the flag being set."""
    if problem.flag == flag:
        for prefix in (child_path("$.flags", flag), child_path("$", flag)):
            if problem.path.startswith(prefix):
                rest = problem.path[len(prefix):]
                break
        else:
            found = _FLAG_IN_ARRAY.match(problem.path)
            rest = problem.path[found.end():] if found else None
        if rest:
            return f"{rest.lstrip('.')} ({problem.path}): "
    return f"{problem.path}: "
