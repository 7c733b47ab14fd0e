"""HTTP to the etcd v3 JSON gateway: one request to one endpoint with a deadline, the auth token,
and failover across the endpoints.

Every request carries ``Grpc-Metadata-Hasleader: true``: a member cut off from its leader then
refuses at once ("no leader") instead of serving stale reads or holding the request until a
timeout, and the refusal sends the client to the next endpoint.

Resource handling: the ``httpx.AsyncClient`` (its connection pool) is owned by whoever made the
Transport (the gateway), which closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import trio

from agent.sources.etcd.auth import TokenKeeper
from agent.sources.etcd.errors import (
    BadAnswer,
    EndpointDown,
    EtcdError,
    EtcdTimeout,
    EtcdUnavailable,
    OutcomeUnknown,
)
from agent.sources.etcd.refusals import TokenRejected, classify_refusal
from agent.sources.etcd.settings import EtcdSettings

HAS_LEADER = {"Grpc-Metadata-Hasleader": "true"}


def make_client(settings: EtcdSettings) -> httpx.AsyncClient:
    """The pooled HTTP client for one cluster (TLS from the settings; no proxies from the environment)."""
    timeout = httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout)
    return httpx.AsyncClient(timeout=timeout, verify=settings.ssl_context(), trust_env=False,
                             headers={"Content-Type": "application/json", **HAS_LEADER})


class Transport:
    def __init__(self, settings: EtcdSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self._client = client
        self._auth = TokenKeeper(settings.user, settings.password)
        self._preferred = settings.endpoints[0]

    def order(self) -> list[str]:
        """The endpoints to try, the one that last answered first."""
        endpoints = list(self.settings.endpoints)
        start = endpoints.index(self._preferred)
        return endpoints[start:] + endpoints[:start]

    def prefer(self, endpoint: str) -> None:
        self._preferred = endpoint

    @property
    def auth_enabled(self) -> bool:
        return self._auth.enabled

    def forget_token(self) -> None:
        """Log in again before the next request (a watch refused as "permission denied" may mean
        an expired token: a watch is refused with that rather than "invalid auth token")."""
        self._auth.forget_any()

    async def call(self, path: str, body: dict[str, Any], *, write: bool = False) -> dict[str, Any]:
        """POST to the first endpoint that answers; return its decoded answer.

        Raises:
            EtcdUnavailable: every endpoint was down (each one's reason inside).
            OutcomeUnknown: a write's answer was lost (not retried elsewhere).
            EtcdRequestError: etcd refused the request itself.
        """
        attempts: list[EtcdError] = []
        for endpoint in self.order():
            try:
                answer = await self.request(endpoint, path, body, write=write)
            except EndpointDown as exc:
                attempts.append(exc)
                continue
            self.prefer(endpoint)
            return answer
        raise EtcdUnavailable(attempts)

    async def request(self, endpoint: str, path: str, body: dict[str, Any], *, write: bool = False) -> dict[str, Any]:
        """POST to this one endpoint with the auth token, logging in again once if etcd rejects it."""
        for last_try in (False, True):
            token = await self._auth.token(self._post, endpoint)
            try:
                return await self._post(endpoint, path, body, token=token, write=write)
            except TokenRejected:
                if last_try or not self._auth.enabled:
                    raise
                self._auth.forget(token)
        raise AssertionError("unreachable")

    async def _post(self, endpoint: str, path: str, body: dict[str, Any], *, token: str | None = None,
                    write: bool = False) -> dict[str, Any]:
        headers = {"Authorization": token} if token else None
        content = orjson.dumps(body)
        try:
            with trio.fail_after(self.settings.request_timeout):
                response = await self._client.post(self.settings.url(endpoint, path), content=content,
                                                   headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise EndpointDown(endpoint, f"cannot connect: {exc or type(exc).__name__}") from exc
        except (trio.TooSlowError, httpx.TimeoutException) as exc:
            raise self._lost(endpoint, path, f"no answer within {self.settings.request_timeout} s", write) from exc
        except httpx.TransportError as exc:
            raise self._lost(endpoint, path, f"connection failed: {exc or type(exc).__name__}", write) from exc
        return self._decode(endpoint, response, write=write)

    @staticmethod
    def _lost(endpoint: str, path: str, what: str, write: bool) -> EtcdError:
        if write:
            return OutcomeUnknown(endpoint, f"{path}: {what}; the write may or may not have been applied")
        return EtcdTimeout(endpoint, f"{path}: {what}")

    @staticmethod
    def _decode(endpoint: str, response: httpx.Response, *, write: bool) -> dict[str, Any]:
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if response.status_code != 200:
            raise classify_refusal(endpoint, response.status_code, answer, write=write)
        if not isinstance(answer, dict):
            raise BadAnswer(endpoint, f"{response.request.url.path} answered {response.content[:80]!r}, not a JSON object")
        return answer

    @asynccontextmanager
    async def stream(self, endpoint: str, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """A streaming POST (a watch) to one endpoint: the response, once its status is 200.

        Raises:
            EndpointDown: cannot connect, no answer within the request deadline, or a 5xx.
            AuthError, EtcdRequestError: as ``request``.
        """
        for last_try in (False, True):
            token = await self._auth.token(self._post, endpoint)
            response = await self._open(endpoint, path, body, token)
            try:
                if response.status_code == 200:
                    yield response
                    return
                await response.aread()
                error = classify_refusal(endpoint, response.status_code, _json_or_none(response.content), write=False)
            finally:
                await response.aclose()
            if not isinstance(error, TokenRejected) or last_try or not self._auth.enabled:
                raise error
            self._auth.forget(token)

    async def _open(self, endpoint: str, path: str, body: dict[str, Any], token: str | None) -> httpx.Response:
        headers = {"Authorization": token} if token else {}
        request = self._client.build_request("POST", self.settings.url(endpoint, path), content=orjson.dumps(body),
                                             headers=headers, timeout=httpx.Timeout(
                                                 None, connect=self.settings.connect_timeout))
        try:
            with trio.fail_after(self.settings.request_timeout):
                return await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise EndpointDown(endpoint, f"cannot connect: {exc or type(exc).__name__}") from exc
        except (trio.TooSlowError, httpx.TransportError) as exc:
            raise EtcdTimeout(endpoint, f"{path}: no answer within {self.settings.request_timeout} s") from exc


def _json_or_none(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
