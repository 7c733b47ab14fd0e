from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest



@pytest.fixture
def sock_dir():
    """A short directory for sockets: a tmp_path can exceed the 107-byte sun_path limit."""
    d = Path(tempfile.mkdtemp(prefix="fsk-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class _SilentNotifier:
    def ready(self, status: str = "") -> None: ...
    def status(self, text: str) -> None: ...
    def reloading(self) -> None: ...
    def stopping(self) -> None: ...
    def watchdog(self) -> None: ...
    def watchdog_interval(self) -> None:
        return None


@pytest.fixture
def start_agent(nursery, sock_dir):
    """Start a real agent in this test's nursery: ``running = await start_agent([path], **settings)``.

    The socket is ``sock_dir/agent.sock``; the watcher is the real watchfiles one.
    """

    from agent.config import ServeConfig
    from agent.daemon import run_agent

    async def start(flag_files, **settings):
        settings.setdefault("socket", str(sock_dir / "agent.sock"))
        config = ServeConfig(flags=tuple(str(p) if "://" in str(p) else os.path.abspath(p) for p in flag_files),
                             **settings)
        return await nursery.start(functools.partial(
            run_agent, config, handle_signals=False, notifier=_SilentNotifier(), inherited=[],
        ))

    return start
