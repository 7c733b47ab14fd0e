"""Reading an etcd refusal: the gateway's ``{"error", "code", "message"}`` body (or a watch
stream's ``{"error": {"grpc_code", "message", ...}}`` line) turned into the error a caller acts on.

Whether a refused write may have been applied decides whether it may be sent to another member:
"no leader", "too many requests" and an auth refusal happen before a proposal is made, so nothing
was applied; "request timed out" and "leader changed" happen after, so the write may yet commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.sources.etcd.errors import (
    AuthError,
    EndpointDown,
    EtcdError,
    EtcdRequestError,
    NoLeader,
    OutcomeUnknown,
    RequestTooLarge,
)

# gRPC status codes etcd uses.
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
OUT_OF_RANGE = 11
UNAVAILABLE = 14
UNAUTHENTICATED = 16

# etcd's own words (server/etcdserver/api/v3rpc/rpctypes/error.go), matched on a fragment.
_TOKEN_REJECTED = ("invalid auth token", "user name is empty", "revision of auth store is old")
_NOT_APPLIED_BUSY = ("too many requests", "not capable")
# The member's gateway could not reach its own gRPC server: the request went nowhere.
_GATEWAY_CANNOT_CONNECT = ("connection error", "handshake failed")


class TokenRejected(AuthError):
    """The token is expired, unknown or stale: log in again and retry once."""


def parse_refusal(body: Any) -> tuple[int, str]:
    """``(grpc_code, message)`` from a gateway error body; ``(0, "")`` when it is not one."""
    if not isinstance(body, Mapping):
        return 0, ""
    error = body.get("error")
    if isinstance(error, Mapping):  # a streaming error line
        code, message = error.get("grpc_code"), error.get("message")
    else:
        code, message = body.get("code"), body.get("message", error)
    return (code if isinstance(code, int) else 0), (message if isinstance(message, str) else "")


def classify_refusal(endpoint: str, status: int, body: Any, *, write: bool) -> EtcdError:
    """The error for an answer with HTTP ``status`` and ``body`` from ``endpoint``.

    Args:
        write: the request changes data; an answer that leaves its fate open becomes
            ``OutcomeUnknown`` rather than something another endpoint may be asked again.
    """
    code, message = parse_refusal(body)
    said = message or f"HTTP {status}"
    if "no leader" in message:
        return NoLeader(endpoint, f"{said} (the member is cut off from its cluster)")
    if any(words in message for words in _TOKEN_REJECTED):
        return TokenRejected(endpoint, said, code)
    if code in (UNAUTHENTICATED, PERMISSION_DENIED) or "authentication failed" in message:
        return AuthError(endpoint, said, code)
    if "request is too large" in message:
        return RequestTooLarge(endpoint, f"{said} (over the cluster's --max-request-bytes)", code)
    if any(words in message for words in _NOT_APPLIED_BUSY):
        return EndpointDown(endpoint, said)
    if any(words in message for words in _GATEWAY_CANNOT_CONNECT):
        return EndpointDown(endpoint, f"{said} (the member's gateway cannot reach its own gRPC server: "
                                      "under --client-cert-auth its server certificate must allow clientAuth)")
    if status >= 500 or code in (UNAVAILABLE, DEADLINE_EXCEEDED):
        if write:
            return OutcomeUnknown(endpoint, f"{said}; the write may or may not have been applied")
        return EndpointDown(endpoint, said)
    return EtcdRequestError(endpoint, said, code)
