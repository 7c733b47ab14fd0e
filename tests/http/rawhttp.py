"""A raw HTTP/1.1 client for tests: exact bytes out, responses parsed by hand (no library to
paper over what the server really sent)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawHttp:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def tcp(cls, port: int) -> "RawHttp":
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    @classmethod
    async def unix(cls, path: str) -> "RawHttp":
        return cls(await trio.open_unix_socket(path))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # a reset counts as the end
            data = b""
        if not data:
            return False
        self.buffer += data
        return True

    async def response(self, timeout: float = 5.0, *, head: bool = False) -> Answer | None:
        """The next whole response, or None when the server closed first."""
        with trio.fail_after(timeout):
            while b"\r\n\r\n" not in self.buffer:
                if not await self._fill():
                    assert not self.buffer, f"connection closed inside a response head: {self.buffer!r}"
                    return None
            head_bytes, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            lines = head_bytes.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = 0 if head or status in (204, 304) or 100 <= status < 200 else int(headers.get("content-length", 0))
            while len(self.buffer) < length:
                assert await self._fill(), "connection closed inside a response body"
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(status, headers, body)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (anything still sent is discarded)."""
        with trio.fail_after(timeout):
            while await self._fill():
                pass
        return True

    async def request(self, method: str, path: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None, timeout: float = 5.0) -> Answer:
        await self.send(encode(method, path, body, headers))
        answer = await self.response(timeout, head=method == "HEAD")
        assert answer is not None, "the server closed the connection instead of answering"
        return answer

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> "RawHttp":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def encode(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def ofrep_body(context: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"context": context or {}}).encode()
