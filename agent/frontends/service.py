"""What every frontend sees of the agent: what is served, who may change it, the counters.

The NDJSON server and the HTTP server are siblings over one :class:`Service`; neither reaches
past it to the daemon's settings. The daemon builds the writer first and hands it in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from agent.frontends.access import WriteAccess
from agent.frontends.stats import Stats
from agent.store.peer import Peer
from agent.store.reloader import Reloader
from agent.store.store import Store
from agent.writes.writer import Writer
from protocol.errors import PermissionDenied, ReadOnly

audit = logging.getLogger("flagsock.audit")


@attrs.define
class Service:
    """Args:
    writer: applies set/delete, or None when this agent takes no writes.
    read_only_reason: why there is no writer (answered with READ_ONLY).
    """

    store: Store
    reloader: Reloader
    access: WriteAccess
    version: str
    writer: Writer | None = None
    read_only_reason: str = "this agent does not accept writes"
    stats: Stats = attrs.Factory(Stats)
    #: Added under every evaluation context (``--context-value``); a request's own keys win.
    context_values: Mapping[str, Any] = attrs.field(factory=dict)

    def may_write(self, peer: Peer) -> bool:
        return self.access.allows(peer)

    def require_write(self, peer: Peer, op: str, flag: str | None = None) -> None:
        """Refuse (PERMISSION_DENIED, audited) a peer that may not change flags."""
        if not self.access.allows(peer):
            self.audit_refusal(peer, op, flag, "not allowed to write")
            raise PermissionDenied(
                f"uid {peer.uid} (pid {peer.pid}) may not {op}: only root, the agent's own "
                "user and those named by --allow-write / --allow-write-group may"
            )

    def require_writer(self, peer: Peer, op: str, flag: str | None) -> Writer:
        """The writer, for a peer allowed to write; READ_ONLY (audited) where there is none."""
        self.require_write(peer, op, flag)
        if self.writer is None:
            self.audit_refusal(peer, op, flag, self.read_only_reason)
            raise ReadOnly(self.read_only_reason)
        return self.writer

    def audit_refusal(self, peer: Peer, op: str, flag: str | None, why: str) -> None:
        audit.warning("refused %s%s from %s: %s", op, f" of {flag!r}" if flag else "", peer.describe(), why)
