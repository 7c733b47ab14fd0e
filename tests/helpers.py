"""Test helpers shared by the suites: an async line client and flag-file writers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import trio

from protocol.framing import LINE_TOO_LONG, LineDecoder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"

SEED = {
    "flags": {
        "new_checkout_flow": {"name": "new_checkout_flow", "enabled": True, "rollout_percentage": 25,
                              "allowed_users": ["user_123", "user_456"]},
        "dark_mode": {"name": "dark_mode", "enabled": True, "rollout_percentage": None, "allowed_users": []},
        "experimental_search": {"name": "experimental_search", "enabled": False, "rollout_percentage": None,
                                "allowed_users": []},
    }
}


def write_json(path: Path, doc: Any) -> Path:
    """Write a flag file atomically (temp file + rename), as most deploy tools do."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    return path


class LineClient:
    """A test's view of one connection: send lines, read whole messages, with deadlines."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = LineDecoder(64 << 20)
        self.pending: list[Any] = []

    @classmethod
    async def connect(cls, path: str | os.PathLike[str]) -> "LineClient":
        return cls(await trio.open_unix_socket(os.fspath(path)))

    async def send(self, data: bytes | dict[str, Any]) -> None:
        if isinstance(data, dict):
            data = json.dumps(data).encode() + b"\n"
        await self.stream.send_all(data)

    async def receive(self, timeout: float = 5.0) -> Any:
        """The next message, or None at EOF."""
        with trio.fail_after(timeout):
            while not self.pending:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                for line in self.decoder.feed(data):
                    assert line is not LINE_TOO_LONG
                    self.pending.append(json.loads(line))
        return self.pending.pop(0)

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> Any:
        await self.send(message)
        return await self.receive(timeout)

    async def result(self, message: dict[str, Any], timeout: float = 5.0) -> Any:
        answer = await self.request(message, timeout)
        assert answer.get("ok") is True, answer
        return answer["result"]

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> "LineClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
