"""Wire error codes and the exceptions that carry them.

Every refusal on the wire is ``{"ok": false, "error": {"code": CODE, "message": TEXT}}``; the
exceptions here let any layer raise a refusal with the right code and have the connection
handler turn it into that line.
"""

from __future__ import annotations

# Request-level codes (../shared/WIRE.md).
BAD_REQUEST = "BAD_REQUEST"
UNKNOWN_OP = "UNKNOWN_OP"
LINE_TOO_LONG = "LINE_TOO_LONG"
PERMISSION_DENIED = "PERMISSION_DENIED"
CONFLICT = "CONFLICT"
INVALID_FLAG = "INVALID_FLAG"
READ_ONLY = "READ_ONLY"
RELOAD_FAILED = "RELOAD_FAILED"
BUSY = "BUSY"
INTERNAL = "INTERNAL"
# v2: a write's destination (an etcd cluster) cannot be reached; nothing was changed.
UNAVAILABLE = "UNAVAILABLE"

# Evaluation codes, with OpenFeature's meanings.
FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
TYPE_MISMATCH = "TYPE_MISMATCH"
PARSE_ERROR = "PARSE_ERROR"
INVALID_CONTEXT = "INVALID_CONTEXT"
GENERAL = "GENERAL"

ALL_CODES = frozenset(
    {
        BAD_REQUEST, UNKNOWN_OP, LINE_TOO_LONG, PERMISSION_DENIED, CONFLICT, INVALID_FLAG,
        READ_ONLY, RELOAD_FAILED, BUSY, INTERNAL, UNAVAILABLE, FLAG_NOT_FOUND, TYPE_MISMATCH, PARSE_ERROR,
        INVALID_CONTEXT, GENERAL,
    }
)


class ProtocolError(Exception):
    """A request refused with a wire error code.

    Args:
        message: what went wrong and what to do about it, for a person.
    """

    code: str = INTERNAL
    #: More about the refusal, sent beside ``code`` and ``message`` (``explain`` sends its trace).
    details: dict | None = None

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if details is not None:
            self.details = details

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, **(self.details or {})}


class BadRequest(ProtocolError):
    code = BAD_REQUEST


class UnknownOp(ProtocolError):
    code = UNKNOWN_OP


class PermissionDenied(ProtocolError):
    code = PERMISSION_DENIED


class Conflict(ProtocolError):
    code = CONFLICT


class InvalidFlag(ProtocolError):
    code = INVALID_FLAG


class ReadOnly(ProtocolError):
    code = READ_ONLY


class ReloadFailed(ProtocolError):
    code = RELOAD_FAILED


class Unavailable(ProtocolError):
    code = UNAVAILABLE


class FlagNotFound(ProtocolError):
    code = FLAG_NOT_FOUND
