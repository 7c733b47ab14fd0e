"""The ``flagsock`` command against an agent that trickles, babbles or nests too deep: a whole-
call deadline, and exit 3 with one line for an agent that cannot be understood (never a
traceback, never a hang, never exit 1, which means "the agent refused")."""

from __future__ import annotations

import time

import pytest

from tests.client.hostile import HostilePeer, Link, answer
from tests.process import flagsock


def _trickle(link: Link) -> None:
    request = link.request()
    if request is not None:
        link.trickle([b" "] * 200, every=0.2)  # a byte every 200 ms, never a whole line


def _garbage(link: Link) -> None:
    if link.request() is not None:
        link.send(b"\x00\xff not json at all\n")


def _deep(link: Link) -> None:
    request = link.request()
    if request is not None:
        link.send(b'{"id":' + b"[" * 5000 + b"]" * 5000 + b',"ok":true,"result":{}}\n')


def _wrong_shape(link: Link) -> None:
    request = link.request()
    if request is not None:
        link.send(answer(request, {"value": "x"})[:-2] + b',"ok":"maybe"}\n')


@pytest.mark.parametrize("command", [["get", "dark_mode"], ["health"], ["flags"], ["ping"]])
def test_a_trickling_agent_is_cut_off_at_the_whole_call_deadline(sock_dir, command):
    path = str(sock_dir / "t.sock")
    peer = HostilePeer(path, _trickle)
    try:
        started = time.monotonic()
        out = flagsock(*command, "--socket", path, "--timeout", "2")
        took = time.monotonic() - started
    finally:
        peer.close()
    assert out.returncode == 3, (out.returncode, out.stderr)
    assert took < 8, took  # 2 s for the call plus the interpreter's start, on a loaded machine
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("handler", [_garbage, _deep, _wrong_shape])
def test_an_agent_that_cannot_be_understood_is_exit_3_in_one_line(sock_dir, handler):
    path = str(sock_dir / "g.sock")
    peer = HostilePeer(path, handler)
    try:
        out = flagsock("get", "dark_mode", "--socket", path, "--timeout", "5")
    finally:
        peer.close()
    assert out.returncode == 3, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "cannot be understood" in lines[0] or "UNINTELLIGIBLE" in lines[0], lines[0]
