"""Requests and responses: the envelope of ../shared/WIRE.md, without any I/O.

``decode_request`` turns one line into a request dict or raises :class:`BadRequest`;
``ok_line`` / ``error_line`` / ``event_line`` build answers. The JSON codec is a parameter so the
daemon can use a faster one than the standard library's while the client stays stdlib-only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .errors import BadRequest

#: The five value types of flagd and OpenFeature, as a request's "type" names them.
VALUE_TYPES = ("boolean", "string", "integer", "float", "object")

Loads = Callable[[bytes], Any]
Dumps = Callable[[Any], bytes]

_JSON_WORDS = frozenset({b"null", b"true", b"false"})
_BARE_WORD = re.compile(rb"[ \t]*([A-Za-z_][A-Za-z0-9_]{0,63})[ \t\r]*\Z")


def _std_loads(data: bytes) -> Any:
    return json.loads(data)


def decode_request(line: bytes, loads: Loads = _std_loads) -> dict[str, Any]:
    """Parse one request line.

    A line that is one bare word (``ping``) reads as ``{"op": "ping"}`` so people can type
    into ``nc -U``.

    Raises:
        BadRequest: not UTF-8, not JSON, not an object, or ``op`` missing or not a string.
            ``BadRequest.request_id`` holds the ``id`` when the line was an object that had one,
            so the error can still echo it.
    """
    # A JSON request never is a bare word: skip the pattern for those.
    m = _BARE_WORD.match(line) if line[:1] != b"{" else None
    if m is not None and m.group(1) not in _JSON_WORDS:
        return {"op": m.group(1).decode("ascii")}
    try:
        msg = loads(line)
    except RecursionError:
        raise BadRequest("request JSON is nested too deeply to parse") from None
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"request is not valid JSON: {_short(exc)}; send one JSON object per line") from None
    if type(msg) is not dict:
        raise BadRequest(
            f"request must be a JSON object like {{\"op\": \"ping\"}}, not {json_type(msg)}"
        )
    op = msg.get("op")
    if type(op) is not str:
        err = BadRequest(
            "request has no \"op\" field" if op is None and "op" not in msg
            else f"\"op\" must be a string, not {json_type(op)}"
        )
        err.request_id = msg.get("id", _NO_ID)  # type: ignore[attr-defined]
        raise err
    return msg


class _NoId:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no id>"


#: Marker for "the request carried no id", distinct from an id of null.
_NO_ID: Any = _NoId()
NO_ID: Any = _NO_ID


def ok_message(request_id: Any, result: Any) -> dict[str, Any]:
    if request_id is NO_ID:
        return {"ok": True, "result": result}
    return {"id": request_id, "ok": True, "result": result}


def error_message(request_id: Any, code: str, message: str, details: dict | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message, **details} if details else {"code": code, "message": message}
    if request_id is NO_ID:
        return {"ok": False, "error": error}
    return {"id": request_id, "ok": False, "error": error}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."
