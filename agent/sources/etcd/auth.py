"""The etcd auth token: fetched with user and password on first need, shared by every request,
and fetched again when etcd says it is expired or unknown (simple tokens live 5 minutes by default,
and a restarted member forgets them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from agent.sources.etcd.errors import BadAnswer

AUTHENTICATE = "/v3/auth/authenticate"

#: ``post(endpoint, path, body)`` -> the decoded answer (no token, no failover).
Post = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


class TokenKeeper:
    """Holds one token for a user; one login at a time however many requests want it."""

    def __init__(self, user: str | None, password: str | None) -> None:
        self._user = user
        self._password = password
        self._token: str | None = None
        self._lock = trio.Lock()

    @property
    def enabled(self) -> bool:
        return self._user is not None

    async def token(self, post: Post, endpoint: str) -> str | None:
        """The current token, logging in on ``endpoint`` first if there is none (None without credentials).

        Raises:
            AuthError: wrong user or password.
            EndpointDown: ``endpoint`` could not be asked (the caller fails over).
        """
        if self._user is None:
            return None
        async with self._lock:
            if self._token is None:
                answer = await post(endpoint, AUTHENTICATE, {"name": self._user, "password": self._password})
                token = answer.get("token")
                if not isinstance(token, str) or not token:
                    raise BadAnswer(endpoint, "authenticate answered without a token")
                self._token = token
            return self._token

    def forget(self, token: str | None) -> None:
        """Drop ``token`` (etcd refused it) unless another task already replaced it."""
        if token is not None and self._token == token:
            self._token = None

    def forget_any(self) -> None:
        self._token = None
