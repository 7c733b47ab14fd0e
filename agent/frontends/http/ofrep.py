"""OFREP, the OpenFeature Remote Evaluation Protocol (open-feature/protocol ``service/openapi.yaml``).

``POST /ofrep/v1/evaluate/flags/{key}`` answers one flag, ``POST /ofrep/v1/evaluate/flags``
every flag, over the same pure evaluation as the NDJSON ``evaluate``. OFREP carries no type
(its ADR-0003), so flags are evaluated as their own type and the provider checks it.

Statuses: 200 with ``key``, ``value``, ``reason``, ``variant``, ``metadata``; ``value`` left out
when the flag resolved to no variant (disabled, no default variant: ADR-0006's code default);
404 ``FLAG_NOT_FOUND``; 400 for ``PARSE_ERROR``, ``INVALID_CONTEXT``, ``GENERAL`` and
``TARGETING_KEY_MISSING`` (and ``TYPE_MISMATCH``, which cannot arise without a requested type).
``variant`` is always present, null when there is none: the Python provider reads it without a
default.

The bulk answer carries a strong ``ETag``; a request whose ``If-None-Match`` matches gets 304 and
no body (ADR-0005). The tag is a digest of what the answer is a function of: the served
revision of this process (a per-process salt, since revisions restart with the agent), the
selector and the context (canonical JSON, so key order does not matter). A rule that reads
``$flagd.timestamp`` makes the answer a function of the clock too: while the flags in view have
one, the tag is a digest of the answer itself, which costs the evaluation but stays exact.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import quote

import orjson

from agent.engine.evaluate import NO_DEFAULT, evaluate, prepare_context
from agent.engine.model import canonical_json
from agent.store.snapshot import SelectorError, flag_set_of

from .routing import JSON, Request, Response, json_response

__all__ = ["Ofrep", "SELECTOR_HEADER", "request_selector"]

SELECTOR_HEADER = "flagd-selector"
EVENTS_PATH = "/ofrep/v1/events"
_FAILURE_STATUS = {"FLAG_NOT_FOUND": 404}
_NO_VIEW_CACHE = 64


def request_selector(request: Request) -> str | None:
    """The ``Flagd-Selector`` header (None when absent or blank), passed on to ``Snapshot.select``."""
    text = request.headers.get(SELECTOR_HEADER)
    if text is None or not text.strip():
        return None
    return text.strip()


class Ofrep:
    """The OFREP handlers over ``service`` (``store``: the current snapshot; ``stats``: counters).

    Args:
        service: what every frontend sees; only ``store`` and ``stats`` are read here.
        events_path: where the SSE change stream is served (advertised in bulk answers).
        inactivity_delay: the ``inactivityDelaySec`` advertised with it.
    """

    def __init__(self, service: Any, *, events_path: str = EVENTS_PATH, inactivity_delay: int = 120) -> None:
        self.service = service
        self.events_path = events_path
        self.inactivity_delay = inactivity_delay
        #: Per process: revisions restart at every start, so an ETag of a former run must not match.
        self.salt = os.urandom(8)
        self._views: dict[tuple[int, str | None], tuple[tuple[str, ...], bool]] = {}
        self._views_revision = -1

    # -- helpers shared with the event stream ------------------------------------------------

    def config_tag(self, revision: int, selector: str | None) -> str:
        """A token for "the flags served at ``revision`` under ``selector``" (the SSE ``etag``)."""
        digest = hashlib.blake2b(b"%d\0%s" % (revision, (selector or "").encode()), key=self.salt, digest_size=8)
        return digest.hexdigest()

    def _with_host(self, context: dict | None) -> dict | None:
        """The request's context over the host's (``--context-value``): the request wins on a key.
        The host's part is fixed for the life of the process, which the ETag's salt covers."""
        base = getattr(self.service, "context_values", None)
        if not base:
            return context
        return {**base, **context} if context else dict(base)

    def _view(self, snapshot: Any, selector: str | None) -> tuple[Any, bool]:
        """The flags ``selector`` sees and whether any reads the clock (cached per revision).

        Raises:
            SelectorError: the selector is not ``flagSetId=ID``.
        """
        if snapshot.revision != self._views_revision:
            self._views.clear()
            self._views_revision = snapshot.revision
        view = self._views.get((snapshot.revision, selector))
        if view is None:
            flags = snapshot.select(selector)
            view = (flags, any(getattr(flag, "reads_clock", False) for flag in flags.values()))
            if len(self._views) < _NO_VIEW_CACHE:
                self._views[(snapshot.revision, selector)] = view
        return view

    # -- requests ----------------------------------------------------------------------------

    def evaluate_flag(self, request: Request) -> Response:
        key = request.params["key"]
        selector = request_selector(request)
        try:
            context = self._with_host(read_context(request.body))
            snapshot = self.service.store.snapshot
            flags = snapshot.flags if selector is None else snapshot.select(selector)
        except (ContextError, SelectorError) as exc:
            return _failure(400, key, "INVALID_CONTEXT" if isinstance(exc, ContextError) else "GENERAL", str(exc))
        res = evaluate(flags, key, context)
        self.service.stats.count(key, res)  # usage and /metrics: flag, variant, reason (or error)
        code = res.error_code
        if code is not None:
            return _failure(_FAILURE_STATUS.get(code, 400), key, code, res.error_message or code)
        if res.value is NO_DEFAULT:
            body = {"key": key, "reason": res.reason, "variant": res.variant, "metadata": res.metadata}
        else:
            body = {"key": key, "value": res.value, "reason": res.reason, "variant": res.variant,
                    "metadata": res.metadata}
        return Response(200, orjson.dumps(body), JSON)

    def evaluate_all(self, request: Request) -> Response:
        selector = request_selector(request)
        snapshot = self.service.store.snapshot
        try:
            body_context = read_context(request.body)
            context = self._with_host(body_context)
            flags, reads_clock = self._view(snapshot, selector)
        except (ContextError, SelectorError) as exc:
            code = "INVALID_CONTEXT" if isinstance(exc, ContextError) else "GENERAL"
            return json_response(400, {"errorCode": code, "errorDetails": str(exc)})
        config = self.config_tag(snapshot.revision, selector)
        wanted = request.headers.get("if-none-match")
        if not reads_clock:
            context_digest = hashlib.blake2b(canonical_json(body_context or {}), digest_size=8).hexdigest()
            etag = f'"{config}.{context_digest}"'
            if wanted is not None and _matches(wanted, etag):
                return Response(304, b"", None, (("etag", etag),))
        body = orjson.dumps(self._bulk_body(snapshot, flags, context, selector))
        if reads_clock:
            etag = f'"{config}.t{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
            if wanted is not None and _matches(wanted, etag):
                return Response(304, b"", None, (("etag", etag),))
        return Response(200, body, JSON, (("etag", etag),))

    def _bulk_body(self, snapshot: Any, flags: Any, context: dict | None, selector: str | None) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        count = self.service.stats.count
        prepared = prepare_context(context)  # once for every flag, not copied per flag
        for key in flags:
            res = evaluate(flags, key, prepared)
            count(key, res)
            if res.error_code is not None:
                items.append({"key": key, "errorCode": res.error_code,
                              "errorDetails": res.error_message or res.error_code})
            elif res.value is NO_DEFAULT:
                items.append({"key": key, "reason": res.reason, "variant": res.variant, "metadata": res.metadata})
            else:
                items.append({"key": key, "value": res.value, "reason": res.reason, "variant": res.variant,
                              "metadata": res.metadata})
        uri = (self.events_path if selector is None
               else f"{self.events_path}?flagSetId={quote(flag_set_of(selector), safe='')}")
        return {
            "flags": items,
            "metadata": {"revision": snapshot.revision},
            "eventStreams": [{"type": "sse", "endpoint": {"requestUri": uri},
                              "inactivityDelaySec": self.inactivity_delay}],
        }


class ContextError(ValueError):
    pass


def read_context(body: bytes) -> dict | None:
    """The ``context`` of an OFREP request body; an empty body or no context is no context.

    Raises:
        ContextError: the body is not a JSON object or its ``context`` is not an object.
    """
    if not body.strip():
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ContextError(f"the request body is not JSON ({exc}); send {{\"context\": {{...}}}}") from None
    if type(doc) is not dict:
        raise ContextError(f"the request body must be a JSON object {{\"context\": {{...}}}}, not {_json_type(doc)}")
    context = doc.get("context")
    if context is None or type(context) is dict:
        return context
    raise ContextError(f"\"context\" must be an object, not {_json_type(context)}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), type(value).__name__)


def _failure(status: int, key: str, code: str, details: str) -> Response:
    return json_response(status, {"key": key, "errorCode": code, "errorDetails": details})


def _matches(header: str, etag: str) -> bool:
    """If-None-Match: ``*`` or a list of tags, compared weakly (RFC 9110 13.1.2)."""
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
