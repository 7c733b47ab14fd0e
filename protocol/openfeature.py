"""An OpenFeature provider backed by the flagsock agent.

Install with ``pip install flagsock[openfeature]``, then::

    from openfeature import api
    from protocol.openfeature import FlagsockProvider

    api.set_provider(FlagsockProvider())          # $FLAGSOCK_SOCKET or /run/flagsock/flagsock.sock
    client = api.get_client()
    if client.get_boolean_value("new_checkout_flow", False, EvaluationContext("user_123")):
        ...

Resolution goes through :class:`protocol.client.FlagClient`, by default with its cache, which
the agent keeps fresh by pushing changes; every resolver passes its type to the agent, which
answers ``TYPE_MISMATCH`` for a flag of another type. The agent's reasons are flagd's and map one
to one onto OpenFeature's (a cache hit keeps the reason the agent gave, not ``CACHED``).

Events, from the client's subscription:

* ``PROVIDER_READY``: ``initialize`` returns once the subscription is up (the SDK then emits
  READY); READY is emitted again whenever the agent is back after an outage.
* ``PROVIDER_CONFIGURATION_CHANGED``: on every ``changed`` event, with ``flags_changed`` (the keys
  added, updated or removed) and the agent's ``revision`` in the metadata.
* ``PROVIDER_STALE``: as soon as the connection to the agent is lost. Evaluations return their
  defaults with ``PROVIDER_NOT_READY`` (or ``GENERAL`` for a timeout) until it is back.
* ``PROVIDER_ERROR``: when it has been lost for ``error_after`` seconds (5 by default; checked
  at each reconnection attempt, which come at most a second apart), or when ``initialize``
  finds no agent within ``init_timeout`` (the SDK emits that one).

This is the only flagsock module that imports ``openfeature``.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagMetadata, FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from .client import EvaluationDetails, FlagClient

__all__ = ["FlagsockProvider"]

log = logging.getLogger("flagsock.openfeature")

_REASONS = {r.value: r for r in Reason}
_ERROR_CODES = {c.value: c for c in ErrorCode}

_NOT_STARTED, _READY, _STALE, _ERROR = "not started", "ready", "stale", "error"


class FlagsockProvider(AbstractProvider):
    """OpenFeature provider for a flagsock agent on a Unix socket.

    Args:
        socket_path: the agent's socket; default ``$FLAGSOCK_SOCKET``, then
            ``/run/flagsock/flagsock.sock``.
        timeout: seconds one evaluation may take when it has to ask the agent.
        cache: cache results, kept fresh by the agent's change events (see
            :class:`~protocol.client.FlagClient`).
        init_timeout: how long ``initialize`` waits for the agent before failing (the provider
            keeps trying in the background and emits READY when the agent appears).
        error_after: seconds after losing the agent when STALE turns into ERROR.

    Resource handling: ``initialize`` opens the client (sockets and one background thread);
    ``shutdown`` closes it and joins the thread.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 0.5,
        cache: bool = True,
        init_timeout: float = 2.0,
        error_after: float = 5.0,
    ) -> None:
        super().__init__()
        self._socket_path = socket_path
        self._timeout = timeout
        self._cache = cache
        self._init_timeout = init_timeout
        self._error_after = error_after
        self._client: FlagClient | None = None
        self._lock = threading.Lock()
        self._state = _NOT_STARTED
        self._connected = threading.Event()

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagsock")

    # -- lifecycle --------------------------------------------------------------------------

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Connect and subscribe; return once the agent answered.

        Raises:
            ProviderNotReadyError: no agent within ``init_timeout``; the SDK then reports
                PROVIDER_ERROR, and this provider emits PROVIDER_READY once the agent is reachable.
        """
        with self._lock:
            stale_client = self._client
            self._state = _NOT_STARTED
            self._connected.clear()
            self._client = FlagClient(
                self._socket_path, timeout=self._timeout, cache=self._cache, on_event=self._on_event
            )
            path = self._client.path
        if stale_client is not None:  # initialized twice without a shutdown in between
            stale_client.close()
        if not self._connected.wait(self._init_timeout):
            with self._lock:
                if self._state == _NOT_STARTED:
                    self._state = _ERROR
                    raise ProviderNotReadyError(
                        f"no flagsock agent answered at {path} within {self._init_timeout}s; "
                        "start it (flagsock serve) or fix the socket path; will keep trying"
                    )

    def shutdown(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._state = _NOT_STARTED
        if client is not None:
            client.close()

    def _on_event(self, event: dict[str, Any]) -> None:
        """Turn the client's subscription events into provider events (subscriber thread)."""
        kind = event.get("event")
        if kind == "changed":
            flags = event.get("flags")
            self.emit_provider_configuration_changed(
                ProviderEventDetails(
                    flags_changed=sorted(flags) if isinstance(flags, dict) else [],
                    metadata=_metadata({"revision": event.get("revision")}),
                )
            )
        elif kind == "reload_failed":
            log.warning("flagsock agent refused a flag source, still serving the last good flags: %s", event.get("message"))
        elif kind == "subscribed":
            with self._lock:
                previous, self._state = self._state, _READY
            if previous == _NOT_STARTED:
                self._connected.set()  # initialize() returns and the SDK emits READY
            elif previous != _READY:
                self.emit_provider_ready(
                    ProviderEventDetails(message="flagsock agent is back", metadata=_metadata({"revision": event.get("revision")}))
                )
        elif kind == "disconnected":
            message = f"lost the flagsock agent: {event.get('message')}"
            with self._lock:
                previous = self._state
                if previous == _READY:
                    self._state = _STALE
                elif previous == _STALE and float(event.get("down_s") or 0) >= self._error_after:
                    self._state = _ERROR
            if previous == _READY:
                self.emit_provider_stale(ProviderEventDetails(message=message))
            elif previous == _STALE and self._state == _ERROR:
                self.emit_provider_error(ProviderEventDetails(message=message, error_code=ErrorCode.PROVIDER_NOT_READY))

    # -- resolvers --------------------------------------------------------------------------

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        details = self._resolve(flag_key, default_value, evaluation_context, "float")
        if type(details.value) is int:  # JSON has one number type; the SDK checks for float
            details.value = float(details.value)
        return details

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")

    def _resolve(
        self, flag_key: str, default: Any, evaluation_context: EvaluationContext | None, type_: str
    ) -> FlagResolutionDetails[Any]:
        client = self._client
        if client is None:
            return FlagResolutionDetails(
                value=default,
                error_code=ErrorCode.PROVIDER_NOT_READY,
                error_message="the flagsock provider is not initialized (or was shut down)",
                reason=Reason.ERROR,
            )
        return _resolution(client.evaluate(flag_key, _wire_context(evaluation_context), default, type_))


def _resolution(d: EvaluationDetails) -> FlagResolutionDetails[Any]:
    if d.error_code is not None:
        code = _ERROR_CODES.get(d.error_code)
        message = d.error_message or d.error_code
        if code is None:  # a wire code OpenFeature lacks (BUSY, INTERNAL...): keep it in the text
            code, message = ErrorCode.GENERAL, f"{d.error_code}: {message}"
        return FlagResolutionDetails(
            value=d.value, error_code=code, error_message=message, reason=Reason.ERROR,
            flag_metadata=_metadata(d.metadata),
        )
    return FlagResolutionDetails(
        value=d.value,
        variant=d.variant,
        reason=_REASONS.get(d.reason, d.reason),
        flag_metadata=_metadata(d.metadata),
    )


def _metadata(raw: Mapping[str, Any]) -> FlagMetadata:
    """Flag metadata as OpenFeature allows it: scalar values only (others are dropped)."""
    return {k: v for k, v in raw.items() if isinstance(v, (bool, int, float, str))}


def _wire_context(ctx: EvaluationContext | None) -> dict[str, Any] | None:
    """An EvaluationContext as the agent reads it: ``targetingKey`` plus the attributes."""
    if ctx is None or (not ctx.targeting_key and not ctx.attributes):
        return None
    out = {k: _json_value(v) for k, v in ctx.attributes.items()}
    if ctx.targeting_key:
        out["targetingKey"] = ctx.targeting_key
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value
