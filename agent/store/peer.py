"""Who is on the other end of a Unix socket, as the kernel says (SO_PEERCRED, SO_PEERGROUPS).

A change is recorded with its peer (the audit log, the history), so the store knows this type.
"""

from __future__ import annotations

import functools
import pwd
import socket
import struct
from typing import Any

import attrs

_UCRED = struct.Struct("3i")
#: Linux's SO_PEERGROUPS (the peer's supplementary groups at connect time); Python does not name it.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_MAX_GROUPS = 65536


@attrs.frozen
class Peer:
    pid: int
    uid: int
    gid: int
    #: Supplementary groups, as the kernel reported them when the peer connected.
    groups: frozenset[int] = frozenset()

    def describe(self) -> str:
        return f"pid {self.pid} uid {self.uid}"


UNKNOWN_PEER = Peer(pid=0, uid=-1, gid=-1)


def who(peer: Peer) -> dict[str, Any]:
    """The peer as the change history names who made a change. Looks the user up (NSS may block
    for a directory service): call it in a worker thread."""
    return {"uid": peer.uid, "pid": peer.pid, "user": user_name(peer.uid)}


@functools.lru_cache(maxsize=256)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def peer_of(sock: socket.socket) -> Peer:
    """Read the connecting process's credentials; UNKNOWN_PEER where the kernel gives none."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return UNKNOWN_PEER
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid=pid, uid=uid, gid=gid, groups=_peer_groups(sock))


def _peer_groups(sock: socket.socket) -> frozenset[int]:
    size = 64 * 4
    while size <= _MAX_GROUPS * 4:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as exc:
            if exc.errno == 34:  # ERANGE: more groups than room; the kernel wants a larger buffer
                size *= 4
                continue
            return frozenset()
        return frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    return frozenset()
