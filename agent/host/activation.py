"""Socket activation: take over the listening sockets systemd opened for us.

systemd (or ``systemd-socket-activate``) binds the socket, then starts the agent with the
listening descriptors from fd 3 on and tells it so in ``LISTEN_PID``, ``LISTEN_FDS`` and
``LISTEN_FDNAMES``. This is the protocol of sd_listen_fds(3), written out in Python so the
agent needs no libsystemd.

Each descriptor carries a name (``FileDescriptorName=`` in the ``.socket`` unit, which defaults
to the unit's own name). The agent serves a descriptor named ``http`` (:data:`HTTP_FDNAME`,
``flagsock-http.socket``) with the HTTP frontend, a Unix or TCP stream socket; every other
descriptor (``flagsock``, ``flagsock.socket``, unnamed) is the NDJSON socket, which must be a
Unix stream socket.

The socket stays systemd's: the server must neither unlink its path nor shut it down when it
stops, or clients would get ECONNREFUSED across a restart, which is the point of activating.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Final

import attrs

from agent.host.errors import StartupError

__all__ = ["HTTP_FDNAME", "LISTEN_FDS_START", "ActivationError", "InheritedSocket", "inherited_sockets"]

log = logging.getLogger("flagsock.activation")

#: The first inherited descriptor; 0-2 are stdin, stdout and stderr.
LISTEN_FDS_START: Final = 3

#: The ``FileDescriptorName=`` of a socket the agent serves HTTP (OFREP, SSE, probes) on.
HTTP_FDNAME: Final = "http"

_VARIABLES: Final = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_TCP_FAMILIES: Final = (socket.AF_INET, socket.AF_INET6)


@attrs.frozen
class InheritedSocket:
    """One listening socket systemd handed over, with the name its ``.socket`` unit gave it."""

    sock: socket.socket
    #: The ``LISTEN_FDNAMES`` entry ("" when the launcher named none).
    name: str
    fd: int

    @property
    def serves_http(self) -> bool:
        return self.name == HTTP_FDNAME

    def describe(self) -> str:
        return f"inherited fd {self.fd} {_describe(self.name)}"


class ActivationError(StartupError):
    """The activation variables or the descriptors they name are not what the agent serves on."""


def inherited_sockets() -> list[InheritedSocket]:
    """Return the listening sockets systemd handed to this process, in fd order, with their names.

    The three ``LISTEN_*`` variables are removed from the environment in every case, so a
    child process never mistakes them for its own. They only count when ``LISTEN_PID`` is
    this process: a parent's leftovers are ignored.

    Returns:
        One socket per inherited descriptor, close-on-exec, or ``[]`` when the process was
        not socket-activated.

    Raises:
        ActivationError: the variables are malformed, or a descriptor is not a listening
            stream socket of a family its name allows (``AF_UNIX`` for NDJSON; ``AF_UNIX``,
            ``AF_INET`` or ``AF_INET6`` for ``http``). The message names the descriptor and
            what to change in the ``.socket`` unit.

    Resource handling:
        The caller owns the returned sockets. It may close them, but must not unlink their
        paths or call ``shutdown()``: systemd keeps listening on them across restarts.
    """
    values = {name: os.environ.pop(name, None) for name in _VARIABLES}
    pid_text, count_text, names_text = (values[name] for name in _VARIABLES)
    if pid_text is None or count_text is None:
        return []
    pid = _parse_int("LISTEN_PID", pid_text)
    if pid != os.getpid():
        log.debug("ignoring LISTEN_FDS meant for pid %d (this is pid %d)", pid, os.getpid())
        return []
    count = _parse_int("LISTEN_FDS", count_text)
    if count < 0:
        raise ActivationError(f"LISTEN_FDS={count_text!r} is negative")
    names = names_text.split(":") if names_text else [""] * count
    if len(names) != count:
        raise ActivationError(
            f"LISTEN_FDNAMES={names_text!r} names {len(names)} descriptors but "
            f"LISTEN_FDS={count}; they must match (systemd sets both, check the launcher)"
        )
    sockets = []
    for offset, name in enumerate(names):
        fd = LISTEN_FDS_START + offset
        sockets.append(InheritedSocket(_adopt(fd, name), name, fd))
        log.debug("inherited listening socket fd %d %s", fd, _describe(name))
    return sockets


def _parse_int(variable: str, text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ActivationError(f"{variable}={text!r} is not a decimal number") from None


def _describe(name: str) -> str:
    return f"(name {name!r})" if name else "(unnamed)"


def _adopt(fd: int, name: str) -> socket.socket:
    """Wrap inherited ``fd`` after checking it is a listening stream socket its name allows."""
    where = f"inherited fd {fd} {_describe(name)}"
    try:
        # Set close-on-exec first, so nothing this process starts inherits the listener even
        # when the checks below refuse it.
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ActivationError(
            f"{where} is not an open socket ({exc.strerror}); LISTEN_FDS promised one"
        ) from None
    # From here on the descriptor belongs to ``sock``: detach it before refusing, so the
    # error leaves the fd open as it was found rather than closing it behind systemd's back.
    try:
        family, kind = sock.family, sock.type
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
    except OSError as exc:
        sock.detach()
        raise ActivationError(f"{where} could not be inspected: {exc.strerror}") from None
    http = name == HTTP_FDNAME
    if kind != socket.SOCK_STREAM or (family != socket.AF_UNIX and not (http and family in _TCP_FAMILIES)):
        sock.detach()
        if http:
            wanted = ("serves HTTP on a stream socket: use ListenStream=/path/to/socket or "
                      "ListenStream=127.0.0.1:PORT in the .socket unit")
        else:
            wanted = ("serves NDJSON only on a Unix stream socket: use ListenStream=/path/to/socket in the "
                      f".socket unit (a TCP socket is served as HTTP when named: FileDescriptorName={HTTP_FDNAME})")
        raise ActivationError(f"{where} is an {_enum_name(family)} {_enum_name(kind)} socket; flagsock {wanted}")
    if not listening:
        sock.detach()
        raise ActivationError(
            f"{where} is an {_enum_name(family)} stream socket that is not listening (Accept=yes hands over "
            "connections); flagsock needs the listening socket: set Accept=no in the .socket unit"
        )
    return sock


def _enum_name(value: int) -> str:
    return getattr(value, "name", str(value))
