"""``flagsock top``: the screen it draws, and the real thing in a pseudo-terminal under load."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios

import pytest
import trio

from agent.cli.top import bar, render
from tests.helpers import LineClient, write_json

FLAGS = {"flags": {
    "checkout": {"state": "ENABLED", "variants": {"new": True, "old": False}, "defaultVariant": "old",
                 "targeting": {"fractional": [["new", 25], ["old", 75]]}},
    "banner": {"enabled": True},
    "idle": {"enabled": False},
}}
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\x1b\][^\x07]*\x07|\r")


def poll(at: float, usage: dict, not_found: int = 0) -> dict:
    return {"at": at, "stats": {"usage": usage, "not_found": not_found},
            "health": {"status": "ok", "revision": 3, "flag_count": len(usage), "uptime_s": 42.0, "last_error": None},
            "history": [{"revision": 3, "at": "2026-01-01T10:00:00.000Z", "by": {"uid": 0, "pid": 1, "user": "root"},
                         "flags": {"checkout": {"change": "updated"}}}]}


def test_rates_and_split_come_from_the_difference_of_two_polls():
    before = poll(10.0, {"a": {"evaluations": 100, "variants": {"on": 50, "off": 50}, "reasons": {}}})
    after = poll(12.0, {"a": {"evaluations": 300, "variants": {"on": 200, "off": 100},
                              "reasons": {}, "errors": {"TYPE_MISMATCH": 4}}}, not_found=6)
    lines = render(80, 24, before, after, "rate")
    row = next(line for line in lines if line.startswith("a "))
    assert row.split()[1:3] == ["100.0", "2.0"]  # 200 evaluations and 4 errors in 2 s
    assert "█on 75%" in row and "▓off 25%" in row  # this interval's split, not the total's
    assert "not found/s 3" in lines[0]
    assert lines[-1] == "  rev 3 10:00:00 root: checkout updated"


def test_the_screen_fits_80_by_24_whatever_the_flag_count():
    usage = {f"flag-with-a-rather-long-name-{i:04d}": {"evaluations": i, "variants": {"v1": i, "v2": 2 * i},
                                                        "reasons": {}} for i in range(500)}
    lines = render(80, 24, poll(0, {}), poll(1, usage), "rate")
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert any(line.startswith("... ") and "more flags" in line for line in lines)
    assert lines[3].startswith("flag-with-a-rather-…") and lines[3].split()[1] == "499.0"  # the busiest first
    by_name = render(80, 24, poll(0, {}), poll(1, usage), "name")
    assert by_name[3].split()[1] == "0.0"  # flag ...0000 first


def test_bar_cells_add_up_to_the_width():
    cells, legend = bar({"a": 1, "b": 1, "c": 1}, 20)
    assert len(cells) == 20 and legend == "█a 33% ▓b 33% ▒c 33%"
    assert bar({}, 5) == ("·····", "")


def screen_text(raw: bytes) -> str:
    return ESCAPES.sub(b"", raw).decode("utf-8", "replace")


async def test_top_shows_the_live_split_in_a_pseudo_terminal_and_quits_on_q(start_agent, tmp_path, nursery):
    pytest.importorskip("blessed", reason="flagsock top needs the 'top' extra: pip install 'flagsock[top]'")
    flag_file = write_json(tmp_path / "flags.json", FLAGS)
    running = await start_agent([flag_file])
    async with await LineClient.connect(running.socket_path) as client:
        await client.result({"op": "set", "flag": "banner", "enabled": False})

    async def load() -> None:
        async with await LineClient.connect(running.socket_path) as loader:
            i = 0
            while True:
                for _ in range(20):
                    await loader.send({"op": "evaluate", "flag": "checkout", "context": {"targetingKey": f"u{i}"}})
                    i += 1
                for _ in range(20):
                    await loader.receive()

    nursery.start_soon(load)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "top", "--socket", running.socket_path],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    os.set_blocking(master, False)
    seen = bytearray()

    async def read_until(pattern: re.Pattern[str]) -> re.Match[str]:
        with trio.fail_after(30):
            while True:
                found = pattern.search(screen_text(bytes(seen[-20000:])))
                if found:
                    return found
                await trio.lowlevel.wait_readable(master)
                try:
                    seen.extend(os.read(master, 65536))
                except OSError:  # the child closed the terminal
                    raise AssertionError(f"top ended: {screen_text(bytes(seen))[-2000:]}") from None

    try:
        row = await read_until(re.compile(r"checkout +([1-9]\d*\.\d) +(\d+\.\d) +\S+ (.)(\w+) (\d+)% (.)(\w+) (\d+)%"))
        assert float(row[1]) > 0 and float(row[2]) == 0
        shares = {row[4]: int(row[5]), row[7]: int(row[8])}
        assert set(shares) == {"new", "old"} and shares["old"] > shares["new"]  # the 25/75 rollout, live
        await read_until(re.compile(r"rev 2 \d\d:\d\d:\d\d \w+: banner updated"))
        await read_until(re.compile(r"flagsock ok +revision 2 +3 flags"))
        os.write(master, b"n")
        await read_until(re.compile(r"sort: name"))
        os.write(master, b"q")
        with trio.fail_after(10):
            code = await trio.to_thread.run_sync(proc.wait)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_without_blessed_top_says_which_extra_to_install(monkeypatch, capsys):
    from agent.cli.main import main

    monkeypatch.setitem(sys.modules, "blessed", None)  # as if the 'top' extra were not installed
    assert main(["top", "--socket", "/nonexistent/flagsock.sock"]) == 2
    assert "pip install 'flagsock[top]'" in capsys.readouterr().err
