"""Replace a file so that a crash at any moment leaves either the old or the new content.

Blocking; the writer runs it in a worker thread. The sequence is the classic one: a temporary
file in the same directory (so the rename stays on one filesystem), with the original's mode,
owner, ACL and extended attributes, fsynced; renamed over the original; then the directory
fsynced, so the rename itself survives a power cut. Only after all of that may the change be
acknowledged. A rewrite never changes who may read the file: what cannot be kept is refused.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

from agent.sources.trust import why_untrusted

#: OSError numbers that mean "this agent may not write there", answered as READ_ONLY.
NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
TEMP_SUFFIX = ".flagsock-tmp"


def why_not_writable(path: str) -> str | None:
    """Why the agent cannot (or must not) replace ``path``; None when it can.

    A symlink is refused because replacing it would cut the link (a Kubernetes ConfigMap mount
    is a chain of links that the kubelet swaps). A file with no write permission bit at all is
    refused even for root: someone marked it as not to be changed. A path another user could
    change is refused (see agent/sources/trust.py), and so is a file whose owner the agent could
    not give its replacement. Nothing here follows a link at ``path``.
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
        st = os.lstat(path)
    except FileNotFoundError:
        return _untrusted(directory)
    except OSError as exc:
        return f"cannot inspect {path}: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link; this agent does not write through links"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if not st.st_mode & 0o222:
        return (f"{path} has no write permission (mode {stat.S_IMODE(st.st_mode):04o}); "
                "chmod u+w it to let the agent change flags")
    if not os.access(path, os.W_OK, follow_symlinks=False):
        return f"the agent (uid {uid}) may not write {path} (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid})"
    if uid != 0 and st.st_uid != uid:
        return (f"{path} is owned by uid {st.st_uid}, and a replace by the agent (uid {uid}) would make it the "
                "agent's; chown it to the agent's user to let the agent change flags")
    return _untrusted(path)


def _untrusted(path: str) -> str | None:
    try:
        reason = why_untrusted(path)
    except OSError as exc:
        return f"cannot inspect {path}: {exc.strerror or exc}"
    return f"the agent does not write a flag file another user could change: {reason}" if reason else None


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


class UnsafeReplace(Exception):
    """Replacing the file would change who may read or write it (or what it is); nothing was changed."""


def replace_durably(path: str, data: bytes) -> None:
    """Make ``path`` hold ``data``, atomically and durably, keeping who may read and write it.

    The replacement gets the original's owner, group, mode, ACL and every other extended
    attribute, and loses any the directory's default ACL would have given it; where one of them
    cannot be kept, nothing is replaced. The original is opened without following a link and
    inspected through that descriptor, so what is copied is what is replaced.

    Raises:
        UnsafeReplace: the original's access could not be kept, or it is no longer a regular file.
        OSError: nothing was replaced (the temporary file is removed).

    Resource handling: opens and always closes the original (if any), one temporary file and one
    directory fd; the temporary file is unlinked unless it became ``path``.
    """
    directory = os.path.dirname(path) or "."
    original = _inspect_original(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if original is None:
                _new_file_mode(f.fileno())
            else:
                _keep_access(f.fileno(), path, *original)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(directory)


def _inspect_original(path: str) -> tuple[os.stat_result, dict[str, bytes]] | None:
    """The original's status and extended attributes, read through one descriptor; None when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeReplace(f"{path} became a symbolic link after it was checked; the agent does not "
                                "replace a link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeReplace(f"{path} is no longer a regular file")
        return st, _xattrs(fd)
    finally:
        os.close(fd)


def _xattrs(fd: int) -> dict[str, bytes]:
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}  # a filesystem without extended attributes: nothing to keep
        raise
    return {name: os.getxattr(fd, name) for name in names}


def _new_file_mode(fd: int) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def _keep_access(fd: int, path: str, original: os.stat_result, attrs: dict[str, bytes]) -> None:
    """Give the temporary file ``fd`` exactly the original's owner, mode and extended attributes."""
    uid = os.geteuid()
    if (original.st_uid, original.st_gid) != (uid, os.getegid()):
        try:  # first: a chown clears the set-id bits the mode then restores
            os.fchown(fd, original.st_uid, original.st_gid)
        except PermissionError:
            raise UnsafeReplace(
                f"{path} is owned by uid {original.st_uid} gid {original.st_gid}, which the agent (uid {uid}) "
                "cannot give the file that replaces it; chown the file to the agent's user, or run the agent "
                "as its owner") from None
    # An ACL inherited from the directory's default would widen access; a security label is the policy's.
    for name in sorted(_xattrs(fd).keys() - attrs.keys()):
        if name.startswith("security."):
            continue
        try:
            os.removexattr(fd, name)
        except OSError as exc:
            raise UnsafeReplace(f"the replacement of {path} got the extended attribute {name}, which the original "
                                f"lacks, and it cannot be removed ({exc.strerror})") from None
    os.fchmod(fd, stat.S_IMODE(original.st_mode))
    for name, value in attrs.items():
        try:
            if os.getxattr(fd, name) == value:
                continue  # already there (an SELinux label the policy gave it)
        except OSError:
            pass
        try:
            os.setxattr(fd, name, value)
        except OSError as exc:
            what = "its ACL" if name.startswith("system.posix_acl") else f"its extended attribute {name}"
            raise UnsafeReplace(f"{path} carries {what}, which the agent (uid {uid}) cannot copy onto the file "
                                f"that replaces it ({exc.strerror})") from None
    now = os.fstat(fd)
    kept = (stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid) == (
        stat.S_IMODE(original.st_mode), original.st_uid, original.st_gid)
    if not kept:
        raise UnsafeReplace(f"the file replacing {path} would have mode {stat.S_IMODE(now.st_mode):04o} owner "
                            f"{now.st_uid}:{now.st_gid} instead of {stat.S_IMODE(original.st_mode):04o} "
                            f"{original.st_uid}:{original.st_gid}")


def fsync_directory(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
