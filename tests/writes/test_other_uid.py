"""A process of another user: served reads, refused writes, unless --allow-write names it.

The tests run as root. A forked child drops to ``nobody`` and talks to the socket with the
stdlib alone (no exec: the interpreter may live where ``nobody`` cannot run it). The socket
sits in a directory others can enter, with mode 0666.
"""

from __future__ import annotations

import json
import os
import pwd
import socket

import pytest
import trio

from tests.writes.conftest import ok

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another uid")

NOBODY = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else 65534


def _child(sock_path: str, requests: list[dict], out_fd: int) -> None:
    """In the forked child: become nobody, ask, write the answers as JSON, and exit."""
    try:
        os.setgroups([])
        os.setgid(pwd.getpwuid(NOBODY).pw_gid)
        os.setuid(NOBODY)
        answers = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(sock_path)
            reader = s.makefile("rb")
            for message in requests:
                s.sendall(json.dumps(message).encode() + b"\n")
                answers.append(json.loads(reader.readline()))
        os.write(out_fd, json.dumps({"uid": os.getuid(), "answers": answers}).encode())
        os._exit(0)
    except BaseException as exc:  # anything: report it, never return into pytest
        os.write(out_fd, json.dumps({"error": repr(exc)}).encode())
        os._exit(1)


def as_nobody(sock_path: str, requests: list[dict]) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(sock_path, requests, write_fd)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks))
    assert "error" not in report, report
    return report


@pytest.fixture
def open_sock_dir(sock_dir):
    sock_dir.chmod(0o755)
    return sock_dir


async def test_other_uid_reads_but_may_not_write(start_agent, simple_file, open_sock_dir):
    running = await start_agent([simple_file], socket_mode=0o666)
    before = simple_file.read_bytes()
    report = await trio.to_thread.run_sync(as_nobody, running.socket_path, [
        {"op": "evaluate", "flag": "dark_mode"},
        {"op": "set", "flag": "dark_mode", "enabled": False},
        {"op": "delete", "flag": "dark_mode"},
        {"op": "reload"},
    ])
    assert report["uid"] == NOBODY
    read, set_, delete, reload = report["answers"]
    assert read["ok"] is True and read["result"]["value"] is True
    for answer in (set_, delete, reload):
        assert answer["ok"] is False
        assert answer["error"]["code"] == "PERMISSION_DENIED"
        assert f"uid {NOBODY}" in answer["error"]["message"]
    assert simple_file.read_bytes() == before
    assert (await ok(running.socket_path, {"op": "ping"}))["revision"] == 1


async def test_other_uid_is_refused_before_the_read_only_reason(start_agent, simple_file, open_sock_dir):
    running = await start_agent([simple_file], socket_mode=0o666, read_only=True)
    report = await trio.to_thread.run_sync(as_nobody, running.socket_path, [{"op": "set", "flag": "x", "enabled": True}])
    assert report["answers"][0]["error"]["code"] == "PERMISSION_DENIED"


async def test_allow_write_lets_that_user_write(start_agent, simple_file, open_sock_dir):
    running = await start_agent([simple_file], socket_mode=0o666, allow_write=("nobody",))
    report = await trio.to_thread.run_sync(as_nobody, running.socket_path, [
        {"op": "set", "flag": "dark_mode", "enabled": False},
        {"op": "evaluate", "flag": "dark_mode"},
    ])
    written, read = report["answers"]
    assert written == {"ok": True, "result": {"revision": 2}}
    assert read["result"]["value"] is False
    assert json.loads(simple_file.read_text())["flags"]["dark_mode"]["enabled"] is False
    assert simple_file.stat().st_uid == 0, "the file keeps its owner, whoever asked for the write"


async def test_allow_write_group_lets_its_members_write(start_agent, simple_file, open_sock_dir):
    import grp

    group = grp.getgrgid(pwd.getpwuid(NOBODY).pw_gid).gr_name
    running = await start_agent([simple_file], socket_mode=0o666, allow_write_group=(group,))
    report = await trio.to_thread.run_sync(as_nobody, running.socket_path, [{"op": "set", "flag": "g", "enabled": True}])
    assert report["answers"][0]["ok"] is True, report
