"""The agent's listening Unix socket: bound safely, or inherited from systemd.

Binding goes to a private temporary directory first, where the socket gets its mode and group
out of every other user's reach, and is renamed into place, so the socket is never reachable with
the wrong permissions and no chmod or chown can be turned onto another file. An existing socket file is replaced
only when nothing answers on it; a live agent or a file that is not a socket is left alone.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import tempfile
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
    # bind_unix binds in a private directory beside it first (see there): both names must fit.
    longest = max(len(path.encode()), len(os.path.join(directory, ".fsk-12345678", "s").encode()))
    if longest > 107:
        raise ListenerError(f"socket path {path} is too long for a Unix socket (at most ~90 bytes)")


def bind_unix(path: str, *, mode: int = 0o660, gid: int | None = None, backlog: int = 1024) -> BoundSocket:
    """Create, permission and listen on a Unix socket at ``path`` (``gid``: its group, if set).

    The socket is bound inside a fresh private directory beside ``path`` (``mkdtemp``: mode 0700,
    an unpredictable name), given its mode and group there, where no other user can swap it for a
    link, and only then renamed into place. So even in a directory other users can write, the
    chmod and chown can only ever reach the agent's own socket, and the socket is never reachable
    with the wrong permissions.

    Resource handling: returns the listening socket; on failure closes it and removes the
    private directory and anything in it.
    """
    check_socket_path(path)
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    _clear_stale(path)
    try:
        private = tempfile.mkdtemp(prefix=".fsk-", dir=directory)
    except OSError as exc:
        raise ListenerError(f"cannot create socket {path}: {exc.strerror or exc} (in {directory})") from None
    tmp = os.path.join(private, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(tmp)
        st = os.lstat(tmp)  # the inode cleanup() removes; path itself may be swapped once it is public
        os.chmod(tmp, mode)  # Linux cannot chmod a link itself; no one else can put one here anyway
        if gid is not None:
            os.chown(tmp, -1, gid, follow_symlinks=False)
        sock.listen(backlog)
        os.rename(tmp, path)
    except OSError as exc:
        sock.close()
        with _suppress(OSError):
            os.unlink(tmp)
        raise ListenerError(f"cannot create socket {path}: {exc.strerror or exc}") from None
    finally:
        with _suppress(OSError):
            os.rmdir(private)
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
