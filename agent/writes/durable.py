"""Replace a file so that a crash at any moment leaves either the old or the new content.

Blocking; the writer runs it in a worker thread. The sequence is the classic one: a temporary
file in the same directory (so the rename stays on one filesystem), with the original's mode
and owner, fsynced; renamed over the original; then the directory fsynced, so the rename
itself survives a power cut. Only after all of that may the change be acknowledged.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

#: OSError numbers that mean "this agent may not write there", answered as READ_ONLY.
NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
TEMP_SUFFIX = ".flagsock-tmp"


def why_not_writable(path: str) -> str | None:
    """Why the agent cannot (or must not) replace ``path``; None when it can.

    A symlink is refused because replacing it would cut the link (a Kubernetes ConfigMap mount
    is a chain of links that the kubelet swaps). A file with no write permission bit at all is
    refused even for root: someone marked it as not to be changed.
    """
    if os.path.islink(path):
        return (f"{path} is a symbolic link (to {os.path.realpath(path)}), as in a Kubernetes ConfigMap "
                "mount; replacing it would cut the link, so this agent does not write it")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        return f"directory {directory} of {path} does not exist"
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{path} is on a read-only filesystem"
    except OSError:
        pass
    uid = os.geteuid()
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"the agent (uid {uid}) may not create files in {directory}, which a safe replace of {path} needs"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if not st.st_mode & 0o222:
        return (f"{path} has no write permission (mode {stat.S_IMODE(st.st_mode):04o}); "
                "chmod u+w it to let the agent change flags")
    if not os.access(path, os.W_OK):
        return f"the agent (uid {uid}) may not write {path} (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid})"
    return None


def _temp_prefix(path: str) -> str:
    # Not starting with "..": the watcher treats such names as a ConfigMap swap.
    return f".{os.path.basename(path).lstrip('.')}."


def remove_stale_temps(path: str) -> list[str]:
    """Remove temporary files a killed agent left beside ``path``; return their names."""
    directory = os.path.dirname(path) or "."
    prefix = _temp_prefix(path)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if name.startswith(prefix) and name.endswith(TEMP_SUFFIX):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def read_current(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist (yet)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def replace_durably(path: str, data: bytes) -> None:
    """Make ``path`` hold ``data``, atomically and durably.

    Raises:
        OSError: nothing was replaced (the temporary file is removed).

    Resource handling: creates and always closes one temporary file and one directory fd; the
    temporary file is unlinked unless it became ``path``.
    """
    directory = os.path.dirname(path) or "."
    try:
        original: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        original = None
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            _copy_permissions(f.fileno(), original)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(directory)


def _copy_permissions(fd: int, original: os.stat_result | None) -> None:
    if original is None:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    os.fchmod(fd, stat.S_IMODE(original.st_mode))
    if (original.st_uid, original.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, original.st_uid, original.st_gid)
        except PermissionError:
            pass  # not root: the file becomes the agent's, which is the best it can do


def fsync_directory(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
