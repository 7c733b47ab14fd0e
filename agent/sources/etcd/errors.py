"""What can go wrong talking to etcd, as a small hierarchy a caller can act on.

Every error names the endpoint (``127.0.0.1:2379``, or the list tried) and what happened. The
split that matters to a caller:

- ``EndpointDown``: this member could not answer (refused, timed out, no leader, a 5xx, a stream
  that ended); the next endpoint may. The gateway fails over on these by itself and raises
  ``EtcdUnavailable`` when none answered.
- ``OutcomeUnknown``: a write was sent and its answer lost; it may or may not have been applied.
  Never retried blindly (a compare-and-swap retried after it succeeded reports a false conflict).
- ``EtcdRequestError`` (and ``AuthError``): etcd answered no; another member would answer the same.
- ``Compacted``: a revision asked for is gone; list again.
"""

from __future__ import annotations

from collections.abc import Sequence


class EtcdError(Exception):
    """Base: ``endpoint`` (who answered, or did not) and ``detail`` (what happened)."""

    def __init__(self, endpoint: str, detail: str) -> None:
        super().__init__(f"etcd {endpoint}: {detail}")
        self.endpoint = endpoint
        self.detail = detail


class EndpointDown(EtcdError):
    """This endpoint cannot serve the request now; another one may."""


class EtcdTimeout(EndpointDown):
    """No answer within the deadline (a hung member, or a network that drops packets)."""


class NoLeader(EndpointDown):
    """The member has no leader (partitioned, or an election is under way)."""


class WatchIdle(EtcdTimeout):
    """A watch stream said nothing for longer than its idle deadline."""


class EtcdUnavailable(EtcdError):
    """No endpoint could serve the request; ``attempts`` holds each endpoint's own error."""

    def __init__(self, attempts: Sequence[EtcdError]) -> None:
        endpoints = ", ".join(a.endpoint for a in attempts) or "(no endpoints)"
        detail = "; ".join(f"{a.endpoint}: {a.detail}" for a in attempts) or "no endpoints configured"
        super().__init__(endpoints, f"unreachable ({detail})")
        self.attempts = tuple(attempts)


class OutcomeUnknown(EtcdError):
    """A write was sent but its answer was lost: it may or may not be committed."""


class EtcdRequestError(EtcdError):
    """etcd refused the request; ``grpc_code`` is its gRPC status code (0 when unknown)."""

    def __init__(self, endpoint: str, detail: str, grpc_code: int = 0) -> None:
        super().__init__(endpoint, detail)
        self.grpc_code = grpc_code


class AuthError(EtcdRequestError):
    """Wrong user or password, no credentials where auth is on, or no permission for the keys."""


class RequestTooLarge(EtcdRequestError):
    """The request is over etcd's request size limit (``--max-request-bytes``, 1.5 MiB by default)."""


class Compacted(EtcdError):
    """The revision asked for was compacted away; ``compact_revision`` is the oldest one kept."""

    def __init__(self, endpoint: str, requested: int, compact_revision: int) -> None:
        super().__init__(endpoint, f"revision {requested} is compacted (the oldest kept is {compact_revision}); "
                                   "list the keys again")
        self.requested = requested
        self.compact_revision = compact_revision


class WatchCanceled(EtcdError):
    """etcd canceled a watch for a reason other than compaction (``reason`` is etcd's own)."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(endpoint, f"watch canceled: {reason or 'no reason given'}")
        self.reason = reason


class BadAnswer(EndpointDown):
    """The endpoint answered something that is not the etcd v3 JSON gateway's answer."""
