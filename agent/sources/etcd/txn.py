"""Transactions: compares, operations, their JSON, and the size check made before sending.

A transaction is one raft proposal, so etcd's request limit (``--max-request-bytes``, 1.5 MiB by
default) applies to all of it together; a write over it is refused here with the sizes and the
biggest key named, rather than by etcd with "request is too large".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from agent.sources.etcd.codec import as_int, b64, header_revision
from agent.sources.etcd.errors import RequestTooLarge

#: Protobuf framing per operation or compare, generously: what the size check adds to the raw bytes.
OP_OVERHEAD = 32

Target = Literal["MOD", "CREATE", "VERSION", "VALUE"]
Result = Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]
_FIELD = {"MOD": "mod_revision", "CREATE": "create_revision", "VERSION": "version"}


@attrs.frozen
class Compare:
    """``key``'s (or every key in ``[key, range_end)``'s) ``target`` ``result`` ``value``.

    ``Compare.mod("k", "LESS", 11)``: k was last changed before revision 11 (or does not exist).
    ``Compare.created("k", "EQUAL", 0)``: k does not exist.
    """

    key: bytes
    target: Target
    result: Result
    value: int | bytes
    range_end: bytes | None = None

    @classmethod
    def mod(cls, key: bytes, result: Result, revision: int, range_end: bytes | None = None) -> "Compare":
        return cls(key, "MOD", result, revision, range_end)

    @classmethod
    def created(cls, key: bytes, result: Result, revision: int, range_end: bytes | None = None) -> "Compare":
        return cls(key, "CREATE", result, revision, range_end)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": b64(self.key), "target": self.target, "result": self.result}
        if self.target == "VALUE":
            assert isinstance(self.value, bytes)
            out["value"] = b64(self.value)
        else:
            out[_FIELD[self.target]] = str(self.value)
        if self.range_end is not None:
            out["range_end"] = b64(self.range_end)
        return out

    def size(self) -> int:
        extra = len(self.value) if isinstance(self.value, bytes) else 0
        return len(self.key) + len(self.range_end or b"") + extra + OP_OVERHEAD


@attrs.frozen
class Put:
    key: bytes
    value: bytes

    def to_json(self) -> dict[str, Any]:
        return {"request_put": {"key": b64(self.key), "value": b64(self.value)}}

    def size(self) -> int:
        return len(self.key) + len(self.value) + OP_OVERHEAD


@attrs.frozen
class Delete:
    """Delete ``key``, or every key in ``[key, range_end)``."""

    key: bytes
    range_end: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        body = {"key": b64(self.key)}
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        return {"request_delete_range": body}

    def size(self) -> int:
        return len(self.key) + len(self.range_end or b"") + OP_OVERHEAD


Op = Put | Delete


@attrs.frozen
class TxnResult:
    """``succeeded``: the compares held (``success`` ran) or not (``failure`` ran).
    ``revision``: the store revision after the transaction (the write's own when it wrote)."""

    succeeded: bool
    revision: int
    deleted: int = 0


def check_size(endpoint: str, parts: Sequence[Compare | Op], limit: int) -> None:
    """Refuse a transaction that etcd would refuse for its size, naming the biggest key in it."""
    total = sum(p.size() for p in parts)
    if total <= limit:
        return
    biggest = max(parts, key=lambda p: p.size())
    raise RequestTooLarge(
        endpoint,
        f"the write is {total} bytes, over etcd's request limit of {limit} bytes (--max-request-bytes); "
        f"the largest part is {biggest.key.decode(errors='replace')!r} at {biggest.size()} bytes",
    )


def txn_body(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if compare:
        body["compare"] = [c.to_json() for c in compare]
    if success:
        body["success"] = [op.to_json() for op in success]
    if failure:
        body["failure"] = [op.to_json() for op in failure]
    return body


def txn_result(answer: Mapping[str, Any]) -> TxnResult:
    deleted = 0
    for response in answer.get("responses") or ():
        if isinstance(response, Mapping) and "response_delete_range" in response:
            deleted += as_int(response["response_delete_range"].get("deleted"), "deleted")
    return TxnResult(bool(answer.get("succeeded", False)), header_revision(answer), deleted)
