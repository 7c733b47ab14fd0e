"""Fixtures for the write tests: flag files in both formats, an agent, and ways to wait on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers import SEED, LineClient, write_json

FLAGD_DOC = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "banner": {
            "state": "ENABLED",
            "variants": {"red": "#f00", "blue": "#00f"},
            "defaultVariant": "red",
            "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "blue"]},
        },
        "kill_switch": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
    },
}


@pytest.fixture
def simple_file(tmp_path: Path) -> Path:
    return write_json(tmp_path / "flags.json", SEED)


@pytest.fixture
def flagd_file(tmp_path: Path) -> Path:
    path = tmp_path / "flagd.json"
    path.write_text(json.dumps(FLAGD_DOC, indent=4) + "\n")
    return path


class _NoWatcher:
    """Stands in for the source watcher: the agent never notices file changes by itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


@pytest.fixture
def start_blind_agent(start_agent, monkeypatch):
    """Like ``start_agent``, but without a watcher: outside edits stay unseen until a write."""
    monkeypatch.setattr("agent.sources.files.SourceWatcher", _NoWatcher)
    return start_agent


async def request(sock: str, message: dict) -> dict:
    async with await LineClient.connect(sock) as c:
        return await c.request(message)


async def ok(sock: str, message: dict) -> dict:
    answer = await request(sock, message)
    assert answer.get("ok") is True, answer
    return answer["result"]


async def refused(sock: str, message: dict, code: str) -> str:
    answer = await request(sock, message)
    assert answer.get("ok") is False, answer
    assert answer["error"]["code"] == code, answer
    return answer["error"]["message"]


async def wait_for_watcher_reload(sock: str, reloads_before: int, timeout: float = 5.0) -> None:
    """Wait (with a deadline) until the agent has run a reload since ``reloads_before``: the
    watcher has had its look at whatever changed on disk."""
    with trio.fail_after(timeout):
        while True:
            stats = await ok(sock, {"op": "stats"})
            if stats["reloads"]["ok"] + stats["reloads"]["failed"] > reloads_before:
                return
            await trio.sleep(0.02)


async def reload_count(sock: str) -> int:
    stats = await ok(sock, {"op": "stats"})
    return stats["reloads"]["ok"] + stats["reloads"]["failed"]
