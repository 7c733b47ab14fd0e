from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from tests.conftest import _SilentNotifier


@pytest.fixture
def serving(sock_dir):
    """``async with serving([flag_file], **settings) as running:`` runs an agent in-process and
    stops it (gracefully, waiting for it to end) when the block ends: a restart is two blocks."""
    from agent.config import ServeConfig
    from agent.daemon import run_agent

    @contextlib.asynccontextmanager
    async def serve(flag_files: list[Any], **settings: Any) -> AsyncIterator[Any]:
        settings.setdefault("socket", str(sock_dir / "agent.sock"))
        config = ServeConfig(flags=tuple(os.path.abspath(p) for p in flag_files), **settings)
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(
                run_agent, config, handle_signals=False, notifier=_SilentNotifier(), inherited=[]))
            try:
                yield running
            finally:
                running.stop()

    return serve
