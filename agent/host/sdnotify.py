"""Tell systemd the agent's state: sd_notify(3) and the service watchdog.

The protocol is one datagram per notification on the ``AF_UNIX`` socket named by
``$NOTIFY_SOCKET``, holding newline-separated ``KEY=value`` assignments. systemd reads the
sender's pid from the socket credentials, so nothing else is needed on our side.

Sending never blocks and never raises: a service must not stall or die because its manager
is slow or gone. The first failure is logged as a warning and later ones at debug level, so
a missing manager costs one log line, not one per watchdog ping.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Final

import trio

__all__ = ["Notifier", "run_watchdog"]

log = logging.getLogger("flagsock.sdnotify")

_MAX_STATUS_CHARS: Final = 512


class Notifier:
    """Sends notifications to the service manager, or does nothing when there is none.

    Build it with :meth:`from_environment`; the constructor is for tests and for callers
    that know the address already.

    Args:
        address: ``$NOTIFY_SOCKET`` as systemd sets it: a filesystem path, or ``@name`` for
            an abstract socket. ``None`` makes every method a no-op.
        watchdog_usec: the watchdog timeout meant for this process, or ``None``.

    Resource handling:
        Owns one unconnected datagram socket, opened lazily on the first send and released by
        :meth:`close` (or leaving a ``with`` block).
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = _sockaddr(address) if address else None
        self._display = address
        self._watchdog_usec = watchdog_usec if self._address is not None else None
        self._sock: socket.socket | None = None
        self._failed_before = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        The watchdog applies when ``WATCHDOG_PID`` is unset or names this process (systemd
        sets it so that a child inheriting the environment does not ping in our name).
        Unlike ``LISTEN_*``, the variables stay set: the agent starts no children, and with
        ``NotifyAccess=main`` systemd would ignore a child's messages anyway.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and address[0] not in "/@":
            log.warning(
                "NOTIFY_SOCKET=%r is neither a path nor an @abstract name; "
                "not notifying the service manager",
                address,
            )
            address = None
        return cls(address, watchdog_usec=_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        """Whether there is a service manager to notify."""
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: the agent serves requests now."""
        return self._send("READY=1", status)

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows."""
        return self._send(None, text)

    def reloading(self, status: str | None = None) -> bool:
        """A reload begins; :meth:`ready` must follow when it ends, failed or not.

        ``MONOTONIC_USEC`` lets the manager tell this reload from an earlier one, which
        ``Type=notify-reload`` (systemd 253+) requires; older managers ignore it.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={now_usec}", status)

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self._send("STOPPING=1", status)

    def watchdog(self) -> bool:
        """Tell the manager the agent is alive, resetting its watchdog timer."""
        return self._send("WATCHDOG=1", None)

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the timeout), or ``None`` without a watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier({self._display!r}, watchdog_usec={self._watchdog_usec!r})"

    def _send(self, assignments: str | None, status: str | None) -> bool:
        """Send one datagram; return whether the manager's socket took it."""
        if self._address is None:
            return False
        lines = [assignments] if assignments else []
        if status is not None:
            lines.append(f"STATUS={_one_line(status)}")
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
                )
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            # BlockingIOError (the manager's queue is full) lands here too: dropping one
            # notification is better than stalling the event loop until systemd catches up.
            level = logging.DEBUG if self._failed_before else logging.WARNING
            self._failed_before = True
            log.log(
                level,
                "could not notify the service manager at %s: %s",
                self._display,
                exc.strerror or exc,
            )
            return False
        return True


async def run_watchdog(
    notifier: Notifier, *, task_status: trio.TaskStatus[float | None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Ping the service watchdog from the event loop until cancelled.

    The pings come from the trio loop itself, not a thread, so a loop that hangs stops
    pinging and systemd restarts the agent, which is what the watchdog is for.

    Returns at once (after ``task_status.started(None)``) when no watchdog is configured;
    otherwise ``started`` gets the interval in seconds, once the first ping has gone out.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        task_status.started(None)
        return
    notifier.watchdog()
    task_status.started(interval)
    deadline = trio.current_time()
    while True:
        # Sleeping to a deadline rather than for an interval keeps the pings from drifting
        # later by the time each one takes; after a stall, resume from now instead of
        # sending the missed pings in a burst.
        deadline = max(deadline + interval, trio.current_time())
        await trio.sleep_until(deadline)
        notifier.watchdog()


def _one_line(text: str) -> str:
    # A newline would end the STATUS= assignment and start a bogus one; systemd also
    # truncates long status lines, so trim here where the cut is visible in the code.
    flat = " ".join(text.split())
    if len(flat) > _MAX_STATUS_CHARS:
        flat = flat[: _MAX_STATUS_CHARS - 1] + "…"
    return flat


def _sockaddr(address: str) -> str | bytes:
    if address.startswith("@"):
        # Linux abstract namespace: a leading NUL, no filesystem entry.
        return b"\0" + address[1:].encode()
    return address


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text and pid_text.strip() != str(os.getpid()):
        log.debug("WATCHDOG_USEC is meant for pid %s, not this process", pid_text)
        return None
    try:
        usec = int(usec_text, 10)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("ignoring WATCHDOG_USEC=%r: not a positive number of microseconds", usec_text)
        return None
    return usec
