"""Whether a flag file's path can be trusted: only root and the agent's own user can change what it names.

A root agent reading ``/srv/shared/flags.json`` would otherwise serve whatever another user put
there: a symlink to ``/etc/shadow`` planted in a world-writable directory makes the agent read a
file that user may not, and hand its content back as flags. So, before every read, the path is
walked one component at a time, links included, as the kernel will resolve it, and refused when:

- a directory on it, or the file, is owned by another user (its owner could chmod it);
- a directory on it is writable by another user or by a foreign group (mode bits or an ACL entry)
  and is not sticky: anyone who can write it can replace the next entry;
- in a sticky directory that others can write (``/tmp``), the entry looked up is not owned by root
  or the agent's user (the kernel's ``protected_symlinks`` reasons the same way), or the file has
  several hard links (one may be another user's link to a file they cannot read);
- a symbolic link on the way is owned by another user;
- the file itself is writable by another user or a foreign group.

"Trusted" users are root and the agent's effective user; "trusted" groups are root's group and the
agent's effective group. This is sshd's ``StrictModes`` applied to every directory and link. Once a
path passes, nothing on it can be changed by anyone else, so opening it right after reads what was
checked.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
import struct
from collections import deque

#: Links followed before giving up, as the kernel does (ELOOP).
MAX_LINKS = 40

_ACL_XATTR = "system.posix_acl_access"
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK = 0x02, 0x04, 0x08, 0x10
_ACL_WRITE = 0x02


def why_untrusted(path: str) -> str | None:
    """Why the agent must not read ``path``; None when only trusted users could have put there what it names.

    Raises:
        OSError: a part of the path cannot be looked up (FileNotFoundError, PermissionError,
            NotADirectoryError, ELOOP); the caller reports it as it reports a failed read.
    """
    uids = frozenset({0, os.geteuid()})
    gids = frozenset({0, os.getegid()})
    # Not os.path.abspath: it folds "link/.." by spelling, where the kernel goes through the link.
    pending = deque(_parts(path if path.startswith("/") else os.path.join(os.getcwd(), path)))
    current = "/"
    current_st = os.lstat(current)
    reason = _check_directory(current, current_st, uids, gids)
    if reason:
        return f"{path}: {reason}"
    links = 0
    while pending:
        name = pending.popleft()
        if name == "..":
            current = os.path.dirname(current)  # an ancestor: already checked on the way down
            current_st = os.lstat(current)
            continue
        entry = os.path.join(current, name)
        st = os.lstat(entry)
        reason = _check_entry(current, current_st, entry, st, uids, gids)
        if reason:
            return f"{path}: {reason}"
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(entry)
            if target.startswith("/"):
                current, current_st = "/", os.lstat("/")
            pending.extendleft(reversed(_parts(target)))
        elif stat.S_ISDIR(st.st_mode):
            reason = _check_directory(entry, st, uids, gids)
            if reason:
                return f"{path}: {reason}"
            current, current_st = entry, st
        elif pending:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), entry)
        else:
            reason = _check_file(entry, st, uids, gids)
            if reason:
                return f"{path}: {reason}"
    return None


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _check_directory(directory: str, st: os.stat_result, uids: frozenset[int], gids: frozenset[int]) -> str | None:
    """A directory is never trusted when another user owns it; others writing it is judged per entry."""
    if st.st_uid not in uids:
        return (f"directory {directory} is owned by {_user(st.st_uid)}, who could replace what it holds; "
                f"the agent (uid {os.geteuid()}) reads flag files only through directories owned by root or itself")
    return None


def _check_entry(directory: str, dir_st: os.stat_result, entry: str, st: os.stat_result,
                 uids: frozenset[int], gids: frozenset[int]) -> str | None:
    """May ``entry`` be used, given who else can write the directory it is in?"""
    writers = _other_writers(directory, dir_st, uids, gids)
    if writers:
        if not dir_st.st_mode & stat.S_ISVTX:
            return (f"directory {directory} is writable by {writers} and not sticky, so they could replace "
                    f"{entry} with a link to any file; make it writable by root or the agent's user only "
                    "(chmod go-w), or move the flag file")
        if st.st_uid not in uids:
            return (f"{entry} is owned by {_user(st.st_uid)} in {directory}, which {writers} can write; "
                    "the agent does not use an entry another user may have planted there")
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            return (f"{entry} has {st.st_nlink} hard links and lies in {directory}, which {writers} can write; "
                    "one may be another user's link to a file they may not read")
    if stat.S_ISLNK(st.st_mode) and st.st_uid not in uids:
        return (f"{entry} is a symbolic link owned by {_user(st.st_uid)}; "
                "the agent follows only links owned by root or its own user")
    return None


def _check_file(path: str, st: os.stat_result, uids: frozenset[int], gids: frozenset[int]) -> str | None:
    if st.st_uid not in uids:
        return (f"the file is owned by {_user(st.st_uid)}, who could make it say anything; "
                f"chown it to root or to the agent's user (uid {os.geteuid()})")
    writers = _other_writers(path, st, uids, gids)
    if writers:
        return (f"the file is writable by {writers} (mode {stat.S_IMODE(st.st_mode):04o}); "
                "make it writable by root or the agent's user only (chmod go-w, setfacl -x)")
    return None


def _other_writers(path: str, st: os.stat_result, uids: frozenset[int], gids: frozenset[int]) -> str | None:
    """Who besides trusted users may write ``path`` (an lstat result), in words; None when no one."""
    if stat.S_ISLNK(st.st_mode):
        return None  # a link's own mode means nothing
    if st.st_mode & stat.S_IWOTH:
        return "every user"
    acl = _acl_writers(path, st, uids, gids)
    if acl is not None:
        return acl or None
    if st.st_mode & stat.S_IWGRP and st.st_gid not in gids:
        return _group(st.st_gid)
    return None


def _acl_writers(path: str, st: os.stat_result, uids: frozenset[int], gids: frozenset[int]) -> str | None:
    """Writers granted by an access ACL ("" for none); None when ``path`` has no ACL (the mode says all)."""
    try:
        raw = os.getxattr(path, _ACL_XATTR, follow_symlinks=False)
    except OSError:
        return None  # no ACL, or a filesystem without them
    if len(raw) < _ACL_HEADER.size or (len(raw) - _ACL_HEADER.size) % _ACL_ENTRY.size:
        return "an ACL the agent cannot read"
    entries = [_ACL_ENTRY.unpack_from(raw, offset) for offset in range(_ACL_HEADER.size, len(raw), _ACL_ENTRY.size)]
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0o7)
    found = []
    for tag, perm, ident in entries:
        if not perm & mask & _ACL_WRITE:
            continue
        if tag == _ACL_USER and ident not in uids:
            found.append(_user(ident))
        elif tag == _ACL_GROUP and ident not in gids:
            found.append(_group(ident))
    group_obj = next((perm for tag, perm, _ in entries if tag == _ACL_GROUP_OBJ), 0)
    if group_obj & mask & _ACL_WRITE and st.st_gid not in gids:
        found.append(_group(st.st_gid))
    return ", ".join(found)


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"group {grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"
