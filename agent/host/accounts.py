"""Users and groups named on the command line, as numeric ids (a name, or digits for an id)."""

from __future__ import annotations

import grp
import pwd

from agent.host.errors import StartupError


def user_id(user: str, option: str) -> int:
    """The uid of ``user``; StartupError naming ``option`` when there is no such user."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        if user.isdigit():
            return int(user)
        raise StartupError(f"{option} {user!r}: no such user") from None


def group_id(group: str, option: str) -> int:
    """The gid of ``group``; StartupError naming ``option`` when there is no such group."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise StartupError(f"{option} {group!r}: no such group") from None
