"""How much an HTTP client may send, how long it may take, and how many may connect at once."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["HttpLimits", "ConnectionLimit", "SharedConnectionLimit", "TcpPeer"]


@attrs.frozen
class HttpLimits:
    """How much a client may send and how long it may take (seconds, bytes)."""

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1 << 20
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    send_timeout: float = 10.0
    #: Connections past the cap are answered 503 by at most this many tasks at once; the rest are closed.
    max_refusing: int = 64


class ConnectionLimit:
    """A connection cap of ``limit`` (the daemon may hand in one shared with the NDJSON server)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def try_acquire(self, peer: Any) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class SharedConnectionLimit:
    """The NDJSON server's cap, shared: both count against ``stats.connections_open``.

    Args:
        stats: the agent's counters (``connections_open``, ``connections_total``, ``connections_refused``).
        limit: ``--max-connections``.
    """

    def __init__(self, stats: Any, limit: int) -> None:
        self.stats = stats
        self.limit = limit

    def try_acquire(self, peer: Any) -> bool:
        stats = self.stats
        if stats.connections_open >= self.limit:
            stats.connections_refused += 1
            return False
        stats.connections_open += 1
        stats.connections_total += 1
        return True

    def release(self) -> None:
        self.stats.connections_open -= 1


@attrs.frozen
class TcpPeer:
    host: str
    port: int

    def describe(self) -> str:
        return f"{self.host}:{self.port}"
