"""What a handler sees and answers, and the table from method and path to handler.

A handler is a plain function ``(Request) -> Response | StreamResponse``: the evaluation behind
it is synchronous and pure, so a request never waits on anything but the socket. A
:class:`StreamResponse` (the SSE change stream) owns the connection until its ``run`` returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

import attrs
import orjson

JSON = "application/json"

__all__ = ["JSON", "Request", "Response", "StreamResponse", "Router", "json_response", "error_response"]


@attrs.frozen(slots=True)
class Request:
    """One whole request: head and body (already size-checked by the server).

    ``headers`` has lower-cased names; repeated fields are joined with ``", "``.
    ``params`` holds the path's variable part (``{key}``), percent-decoded.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    peer: Any = None
    params: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Response:
    """A whole response. ``content_type`` None sends no Content-Type (304, empty bodies)."""

    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: tuple[tuple[str, str], ...] = ()


class StreamSink:
    """What a stream writes to: ``await sink.send(bytes)``; raises when the client is gone."""

    async def send(self, data: bytes) -> None:  # pragma: no cover - the server's class implements it
        raise NotImplementedError


@attrs.frozen(slots=True)
class StreamResponse:
    """A response whose body is written over time by ``run(sink)``; the connection closes after."""

    status: int
    content_type: str
    run: Callable[[StreamSink], Awaitable[None]]
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], "Response | StreamResponse"]


def json_response(status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps(body), JSON, headers)


def error_response(status: int, code: str, details: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """The JSON error body every route shares, shaped as OFREP's (``errorCode``, ``errorDetails``)."""
    return json_response(status, {"errorCode": code, "errorDetails": details}, headers)


class Router:
    """Method + path to handler. A path ending in ``/{NAME}`` matches any one non-empty segment
    there (the flag key, percent-decoded, may itself hold encoded slashes)."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefixed: list[tuple[str, str, dict[str, Handler]]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        if path.endswith("}"):
            prefix, _, name = path.rpartition("/{")
            prefix += "/"
            for known, known_name, methods in self._prefixed:
                if known == prefix:
                    methods[method] = handler
                    return
            self._prefixed.append((prefix, name[:-1], {method: handler}))
        else:
            self._exact.setdefault(path, {})[method] = handler

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], Response | None]:
        """The handler and path parameters, or an error response (404, 405)."""
        methods = self._exact.get(path)
        params: dict[str, str] = {}
        if methods is None:
            for prefix, name, candidates in self._prefixed:
                if path.startswith(prefix):
                    rest = path[len(prefix):]
                    if rest and "/" not in rest:
                        methods, params = candidates, {name: unquote(rest, errors="strict")}
                        break
        if methods is None:
            return None, params, error_response(404, "NOT_FOUND", f"nothing is served at {path[:200]!r}; see "
                                                "docs/protocol.md for the HTTP paths (/ofrep/v1/evaluate/flags, "
                                                "/healthz, /readyz, /metrics)")
        handler = methods.get(method)
        if handler is None and method == "HEAD":
            handler = methods.get("GET")
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return None, params, error_response(405, "METHOD_NOT_ALLOWED",
                                                f"{method[:20]} is not allowed on {path[:200]!r}; use {allowed}",
                                                (("allow", allowed),))
        return handler, params, None
