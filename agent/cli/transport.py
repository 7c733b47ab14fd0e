"""The CLI's side of the wire: the stdlib client's ``call``/``subscribe``, with every failure
turned into one line a person can act on and the command's exit status.

Exit status: 1 the agent refused (its code and message); 2 the request itself is wrong;
3 the agent cannot be reached or cannot be understood.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from protocol import client
from protocol.client import AgentRefused, AgentUnintelligible, AgentUnreachable, socket_path

__all__ = ["CliError", "events", "exchange", "request", "socket_path"]

UNREACHABLE = 3
#: Answers like ``flags`` or ``stats`` over thousands of flags are large; a person asked for them.
MAX_ANSWER_BYTES = 64 << 20


class CliError(Exception):
    """Something the user must fix; ``exit_code`` says how the command ends."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _unreachable(path: str, exc: AgentUnreachable | AgentUnintelligible) -> CliError:
    hint = ""
    if exc.code == "PROVIDER_NOT_READY":
        hint = "; is `flagsock serve` running? (set --socket or $FLAGSOCK_SOCKET)"
    return CliError(f"{path}: {exc.message}{hint}", UNREACHABLE)


def request(path: str, message: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return its ``result``, within ``timeout`` for the whole call."""
    try:
        return client.call(path, message, timeout=timeout, max_line_bytes=MAX_ANSWER_BYTES)
    except AgentRefused as exc:
        raise CliError(f"{exc.code}: {exc.message}") from None
    except (AgentUnreachable, AgentUnintelligible) as exc:
        raise _unreachable(path, exc) from None
    except ValueError as exc:
        raise CliError(f"cannot send that request: {exc}", 2) from None


def exchange(path: str, message: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return the whole answer, ``ok`` or not: ``explain`` prints the trace
    an error answer carries."""
    try:
        return {"ok": True, "result": request(path, message, timeout=timeout)}
    except CliError as exc:
        refused = exc.__cause__ if isinstance(exc.__cause__, AgentRefused) else exc.__context__
        if isinstance(refused, AgentRefused) and refused.error:
            return {"ok": False, "error": refused.error}
        raise


def events(path: str, *, timeout: float = 5.0) -> Iterator[dict[str, Any]]:
    """``subscribed``, then every event, until the agent goes away (raises CliError then)."""
    stream = client.subscribe(path, timeout=timeout, max_line_bytes=MAX_ANSWER_BYTES)
    try:
        yield from stream
    except AgentRefused as exc:
        raise CliError(f"subscribe refused: {exc.code}: {exc.message}") from None
    except (AgentUnreachable, AgentUnintelligible) as exc:
        raise _unreachable(path, exc) from None
    finally:
        stream.close()
