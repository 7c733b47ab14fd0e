"""Who is on the other end of a Unix socket, as the kernel says (SO_PEERCRED)."""

from __future__ import annotations

import socket
import struct

import attrs

_UCRED = struct.Struct("3i")


@attrs.frozen
class Peer:
    pid: int
    uid: int
    gid: int

    def describe(self) -> str:
        return f"pid {self.pid} uid {self.uid}"


UNKNOWN_PEER = Peer(pid=0, uid=-1, gid=-1)


def peer_of(sock: socket.socket) -> Peer:
    """Read the connecting process's credentials; UNKNOWN_PEER where the kernel gives none."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return UNKNOWN_PEER
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid=pid, uid=uid, gid=gid)
