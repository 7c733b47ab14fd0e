"""Who may change flags: root, the agent's own user, and the configured users and groups.

Decided per connection from what the kernel says of the peer (SO_PEERCRED, SO_PEERGROUPS), so
a group membership granted or dropped after the agent started counts as it is now.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from agent.store.peer import Peer


class WriteAccess:
    """Args:
    uids: users allowed besides root and the agent's own user (already resolved to ids).
    gids: groups whose members (primary or supplementary, as the peer holds them) may write.
    """

    def __init__(self, uids: Iterable[int] = (), gids: Iterable[int] = ()) -> None:
        self.uids = frozenset({os.geteuid(), 0, *uids})
        self.gids = frozenset(gids)

    def allows(self, peer: Peer) -> bool:
        if peer.uid in self.uids:
            return True
        if not self.gids:
            return False
        return peer.gid in self.gids or not self.gids.isdisjoint(peer.groups)
