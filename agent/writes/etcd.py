"""``set`` and ``delete`` on an etcd source: validated here, committed in etcd, answered once served.

The change is applied to the document this agent holds (the flag edited exactly as in a file, by
``docedit``), the whole document is validated by the same parser as a file, and only the one
flag's key is written, in a transaction that also rewrites the prefix's ``.written`` marker. With
``if_revision`` R the transaction holds only if no key under the prefix changed after R, across
the fleet. The answer waits until etcd has committed it (a quorum has it) and this agent serves
it, and carries the revision served.

Refusals: CONFLICT (the prefix moved on), INVALID_FLAG (a bad definition, or over etcd's size
limit), UNAVAILABLE (no endpoint reachable, or the cluster refused this agent's credentials);
nothing is written in any of them.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import trio

from agent.engine.formats.document import FlagFileError, parse_flag_document
from agent.engine.limits import DEFAULT_LIMITS, Limits
from agent.sources.etcd.errors import (
    AuthError,
    EtcdError,
    EtcdRequestError,
    EtcdUnavailable,
    OutcomeUnknown,
    RequestTooLarge,
)
from agent.sources.etcd.source import EtcdSource, NotReady, WriteConflict
from agent.sources.etcd.txn import Delete, Put
from agent.sources.etcd.version import DocumentError, assemble
from agent.store.peer import Peer, who
from agent.store.reloader import Reloader
from agent.store.store import Store
from agent.writes.request import check_not_overridden, parse_change
from protocol.errors import Conflict, InvalidFlag, ProtocolError, Unavailable

audit = logging.getLogger("flagsock.audit")

#: How long a committed write may take to come back through this agent's own watch.
SERVE_TIMEOUT = 5.0


class EtcdWriter:
    """Applies ``set``/``delete`` to the etcd source of a running agent."""

    def __init__(self, store: Store, reloader: Reloader, source: EtcdSource, *, fractional: str,
                 limits: Limits = DEFAULT_LIMITS, serve_timeout: float = SERVE_TIMEOUT) -> None:
        self.limits = limits
        self.store = store
        self.reloader = reloader
        self.source = source
        self.fractional = fractional
        self.serve_timeout = serve_timeout

    async def handle_set(self, peer: Peer, req: dict) -> dict:
        return await self._handle(peer, req, "set")

    async def handle_delete(self, peer: Peer, req: dict) -> dict:
        return await self._handle(peer, req, "delete")

    async def _handle(self, peer: Peer, req: dict, op: str) -> dict:
        named = req.get("flag") if type(req.get("flag")) is str else None
        where = self.source.name
        try:
            flag, if_revision, edit = parse_change(op, req, fractional=self.fractional, where=where)
            check_not_overridden(self.store.snapshot.sources, where, flag)
            return await self._write(peer, op, flag, if_revision, edit)
        except ProtocolError as exc:
            audit.warning("refused %s%s from %s on %s: %s %s", op, f" of {named!r}" if named else "",
                          peer.describe(), where, exc.code, exc.message)
            raise

    async def _write(self, peer: Peer, op: str, flag: str, if_revision: int | None, edit: Any) -> dict:
        source = self.source
        before = self.store.snapshot.revision
        if flag.startswith("."):
            raise InvalidFlag(f"flag keys starting with '.' are reserved in {source.name} (for .meta and .written)")
        await source.wait_listed(self.serve_timeout)
        doc = self._document()
        new_doc = edit(doc)
        await trio.to_thread.run_sync(self._validate, new_doc, flag)
        key = source.location.flag_key(flag)
        if op == "set":
            value = orjson.dumps(new_doc["flags"][flag])
            if doc["flags"].get(flag) == new_doc["flags"][flag] and if_revision is None:
                return {"revision": before}  # already so: nothing to commit
            change: Put | Delete = Put(key, value)
        else:
            change = Delete(key)
        # The change comes back through the watch, as anyone's would: tell the history who made it.
        expected = self.store.history.expect(frozenset((flag,)), await trio.to_thread.run_sync(who, peer))
        try:
            revision = await self._commit(change, if_revision, peer)
        except BaseException:
            self.store.history.withdraw(expected)
            raise
        if not await source.wait_for(revision, self.serve_timeout):
            raise ProtocolError(f"committed in etcd at revision {revision}, but this agent's watch has not "
                                f"brought it back within {self.serve_timeout} s; it will be served when it does")
        await self.reloader.reload(f"{op} of {flag!r}")
        await self.store.history.flush()  # as for a file: an acknowledged change is in the history on disk
        after = self.store.snapshot.revision
        audit.info("%s of %r by %s: revision %d -> %d (%s, committed at etcd revision %d)", op, flag,
                   peer.describe(), before, after, source.name, revision)
        return {"revision": after}

    def _document(self) -> dict:
        version = self.source.version
        if version is None:
            raise Unavailable(f"{self.source.name} has not been read yet ({self.source.trouble or 'connecting'}); "
                              "nothing was changed")
        try:
            return orjson.loads(assemble(version, self.source.location))
        except DocumentError as exc:
            raise InvalidFlag(f"{exc}; fix that key first (nothing was changed)") from None

    def _validate(self, doc: dict, flag: str) -> None:
        try:
            parse_flag_document(orjson.dumps(doc), self.source.name, fractional=self.fractional, limits=self.limits,
                                invalid_flags="reject")
        except FlagFileError as exc:
            raise InvalidFlag(f"the change would make {self.source.name} invalid, so nothing was written: "
                              + "; ".join(f"{p.path}: {p.message}" for p in exc.problems)) from None

    async def _commit(self, change: Put | Delete, if_revision: int | None, peer: Peer) -> int:
        by = {"pid": peer.pid, "uid": peer.uid}
        try:
            return await self.source.commit(change, if_revision, by)
        except WriteConflict as exc:
            raise Conflict(f"{exc.detail}; re-read the flag and retry with the revision now served") from None
        except RequestTooLarge as exc:
            raise InvalidFlag(f"{exc}; nothing was written") from None
        except (EtcdUnavailable, NotReady) as exc:
            raise Unavailable(f"{exc}; nothing was changed") from None
        except AuthError as exc:
            raise Unavailable(f"etcd refused this agent: {exc}; nothing was changed") from None
        except OutcomeUnknown as exc:
            raise ProtocolError(f"{exc}; check with get before retrying") from None
        except (EtcdRequestError, EtcdError) as exc:
            raise Unavailable(f"{exc}; nothing was changed") from None
