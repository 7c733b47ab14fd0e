"""The agent's state as the ops see it: what is served, who may change it, the counters."""

from __future__ import annotations

import grp
import logging
import os
import pwd
from typing import Any

from protocol.errors import PermissionDenied

from .accounts import group_id, user_id
from .config import ServeConfig
from .peer import Peer
from .reloader import Reloader
from .stats import Stats
from .store import Store

audit = logging.getLogger("flagsock.audit")


class WriteAccess:
    """Who may change flags: root, the agent's own user, and the configured users and groups."""

    def __init__(self, users: tuple[str, ...] = (), groups: tuple[str, ...] = ()) -> None:
        self.uids = {os.geteuid(), 0}
        for user in users:
            self.uids.add(user_id(user, "--allow-write"))
        self.gids = {group_id(g, "--allow-write-group") for g in groups}
        self.group_members = set()
        for g in groups:
            try:
                self.group_members.update(grp.getgrnam(g).gr_mem)
            except KeyError:
                pass

    def allows(self, peer: Peer) -> bool:
        if peer.uid in self.uids:
            return True
        if peer.gid in self.gids:
            return True
        if self.group_members:
            try:
                name = pwd.getpwuid(peer.uid).pw_name
            except KeyError:
                return False
            return name in self.group_members
        return False


class App:
    def __init__(self, config: ServeConfig, store: Store, reloader: Reloader, *, version: str,
                 access: WriteAccess | None = None) -> None:
        self.config = config
        self.store = store
        self.reloader = reloader
        self.version = version
        self.stats = Stats()
        self.access = access or WriteAccess(config.allow_write, config.allow_write_group)
        #: The flag writer (set/delete), or None with the reason in read_only_reason.
        self.writer: Any = None
        self.read_only_reason = "this agent does not accept writes"

    def may_write(self, peer: Peer) -> bool:
        return self.access.allows(peer)

    def require_write(self, peer: Peer, op: str, flag: str | None = None) -> None:
        """Refuse (PERMISSION_DENIED, audited) a peer that may not change flags."""
        if not self.may_write(peer):
            self.audit_refusal(peer, op, flag, "not allowed to write")
            raise PermissionDenied(
                f"uid {peer.uid} (pid {peer.pid}) may not {op}: only root, the agent's own "
                "user and those named by --allow-write / --allow-write-group may"
            )

    def audit_refusal(self, peer: Peer, op: str, flag: str | None, why: str) -> None:
        audit.warning("refused %s%s from %s: %s", op, f" of {flag!r}" if flag else "", peer.describe(), why)
