"""The agent's listening Unix socket: bound safely, or inherited from systemd.

Binding goes to a temporary name first, gets its mode and group, and is renamed into place, so
the socket is never reachable with the wrong permissions. An existing socket file is replaced
only when nothing answers on it; a live agent or a file that is not a socket is left alone.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from contextlib import suppress as _suppress

import attrs

from agent.host.errors import StartupError

log = logging.getLogger("flagsock.listener")


class ListenerError(StartupError):
    """The socket cannot be set up; the message says why and what to do."""


@attrs.define
class BoundSocket:
    sock: socket.socket
    path: str | None
    #: Whether the agent created the file (and so removes it on exit).
    owned: bool
    inode: tuple[int, int] | None = None

    def cleanup(self) -> None:
        """Remove the socket file if it is still the one this agent created."""
        if not self.owned or self.path is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


def check_socket_path(path: str | None) -> None:
    """Refuse, before anything is loaded, a socket that could not be created at ``path``."""
    if not path:
        raise ListenerError("no socket: pass --socket PATH, or start the agent through systemd socket activation")
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ListenerError(f"cannot create socket {path}: directory {directory} does not exist")


def bind_unix(path: str, *, mode: int = 0o660, gid: int | None = None, backlog: int = 1024) -> BoundSocket:
    """Create, permission and listen on a Unix socket at ``path`` (``gid``: its group, if set)."""
    check_socket_path(path)
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    _clear_stale(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    if len(tmp.encode()) > 107:
        raise ListenerError(f"socket path {path} is too long for a Unix socket (at most ~100 bytes)")
    with _suppress(FileNotFoundError):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(tmp)
        os.chmod(tmp, mode)
        if gid is not None:
            os.chown(tmp, -1, gid)
        sock.listen(backlog)
        os.rename(tmp, path)
    except OSError as exc:
        sock.close()
        with _suppress(OSError):
            os.unlink(tmp)
        raise ListenerError(f"cannot create socket {path}: {exc.strerror or exc}") from None
    st = os.lstat(path)
    return BoundSocket(sock=sock, path=path, owned=True, inode=(st.st_dev, st.st_ino))


def _clear_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenerError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            log.info("replacing stale socket file %s (nothing answers on it)", path)
            with _suppress(FileNotFoundError):
                os.unlink(path)
            return
        raise ListenerError(f"cannot check existing socket {path}: {exc.strerror or exc}") from None
    else:
        raise ListenerError(f"another process is already serving on {path}; stop it or choose another --socket")
    finally:
        probe.close()
