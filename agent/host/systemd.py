"""systemd integration in one import: socket activation, sd_notify and the watchdog.

The pieces live in :mod:`agent.activation` (inheriting listening sockets) and
:mod:`agent.host.sdnotify` (state notifications and watchdog pings); this module only gathers
their public names for ``flagsock serve``.
"""

from __future__ import annotations

from agent.host.activation import HTTP_FDNAME, LISTEN_FDS_START, ActivationError, InheritedSocket, inherited_sockets
from agent.host.sdnotify import Notifier, run_watchdog

__all__ = [
    "HTTP_FDNAME",
    "LISTEN_FDS_START",
    "ActivationError",
    "InheritedSocket",
    "Notifier",
    "inherited_sockets",
    "run_watchdog",
]
