"""Who is on the other end of a Unix socket, as the kernel says (SO_PEERCRED, SO_PEERGROUPS).

A change is recorded with its peer (the audit log, the history), so the store knows this type.
"""

from __future__ import annotations

import functools
import pwd
import errno
import logging
import os
import socket
import struct
from typing import Any

import attrs

log = logging.getLogger("flagsock.peer")

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


_warned = False
#: The most getsockopt() in Python reads; more groups than fit go through libc directly.
_PY_MAX_BUFLEN = 1024


def _peer_groups(sock: socket.socket) -> frozenset[int]:
    """The peer's supplementary groups; empty (so no group grants it anything) when the kernel
    cannot say, which is logged once: SO_PEERGROUPS needs Linux 4.13."""
    global _warned
    try:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _PY_MAX_BUFLEN)
        except OSError as exc:
            if exc.errno != errno.ERANGE:
                raise
            raw = _peer_groups_large(sock.fileno())  # more than 256 groups
    except OSError as exc:
        if not _warned:
            _warned = True
            log.warning("cannot read a peer's supplementary groups (SO_PEERGROUPS: %s); "
                        "--allow-write-group then counts only a peer's primary group", exc.strerror or exc)
        return frozenset()
    count = len(raw) // 4
    return frozenset(struct.unpack(f"{count}I", raw[: count * 4]))


def _peer_groups_large(fd: int) -> bytes:
    """SO_PEERGROUPS through libc, with a buffer as large as the kernel says it needs."""
    import ctypes  # only for peers with more than 256 groups

    libc = ctypes.CDLL(None, use_errno=True)
    size = ctypes.c_uint32(_PY_MAX_BUFLEN * 4)
    while True:
        buf = ctypes.create_string_buffer(size.value)
        wanted = size.value
        if libc.getsockopt(fd, socket.SOL_SOCKET, SO_PEERGROUPS, buf, ctypes.byref(size)) == 0:
            return buf.raw[: size.value]
        err = ctypes.get_errno()
        # On ERANGE the kernel has written the size it needs into ``size``.
        if err != errno.ERANGE or size.value <= wanted or size.value > _MAX_GROUPS * 4:
            raise OSError(err, os.strerror(err))
