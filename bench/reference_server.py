"""The yardstick: the least a Trio NDJSON server on a Unix socket can do per request.

    .venv/bin/python bench/reference_server.py --socket S --flags F [--flags F ...]

Per connection it reads what arrived, splits whole lines, parses each with orjson (the agent's
codec, so a comparison measures the agent's own overhead and not the JSON library), looks the
flag up in a dict and writes an answer shaped like the agent's ``evaluate`` result. The answers
to all the lines of one read go out in one ``send_all``, as the agent batches them.

It knows nothing of targeting: every flag answers its default variant, prepared at start. That
is the point: whatever the agent costs beyond this is the price of its features (validation,
rules, stats, error handling), and bench/bench_server.py reports it as a ratio to this server.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

import orjson
import trio

_NL = orjson.OPT_APPEND_NEWLINE


def answers_from_files(paths: list[str]) -> dict[str, dict[str, Any]]:
    """The evaluate result of every flag in the files (simple or flagd format), default variant."""
    table: dict[str, dict[str, Any]] = {}
    for path in paths:
        with open(path, "rb") as f:
            doc = orjson.loads(f.read())
        flags = doc.get("flags", doc)
        for key, spec in flags.items():
            if "variants" in spec:
                variant = spec.get("defaultVariant")
                value = spec["variants"].get(variant)
            else:
                value = bool(spec.get("enabled"))
                variant = "on" if value else "off"
            table[key] = {"key": key, "value": value, "variant": variant, "reason": "STATIC",
                          "metadata": spec.get("metadata", {}), "revision": 1}
    return table


def answer(table: dict[str, dict[str, Any]], line: bytes) -> bytes:
    try:
        req = orjson.loads(line)
        rid = req.get("id")
        if req.get("op") == "ping":
            return orjson.dumps({"id": rid, "ok": True, "result": {"revision": 1}}, option=_NL)
        result = table.get(req.get("flag"))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return b'{"ok":false,"error":{"code":"BAD_REQUEST","message":"not a JSON object"}}\n'
    if result is None:
        return orjson.dumps({"id": rid, "ok": False,
                             "error": {"code": "FLAG_NOT_FOUND", "message": "no such flag"}}, option=_NL)
    return orjson.dumps({"id": rid, "ok": True, "result": result}, option=_NL)


async def handle(stream: trio.SocketStream, table: dict[str, dict[str, Any]]) -> None:
    pending = b""
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            if pending:
                data = pending + data
            *whole, pending = data.split(b"\n")
            if whole:
                await stream.send_all(b"".join([answer(table, line) for line in whole if line]))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def serve(path: str, table: dict[str, dict[str, Any]]) -> None:
    if os.path.exists(path):
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(1024)
    listener = trio.SocketListener(sock)
    await trio.serve_listeners(lambda stream: handle(stream, table), [listener])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--flags", action="append", required=True)
    args = parser.parse_args()
    table = answers_from_files(args.flags)
    try:
        trio.run(serve, args.socket, table)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
