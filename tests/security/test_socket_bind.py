"""Binding the socket in a directory other users can write cannot be turned onto another file.

Issue 13, point 3, fourth finding: ``bind_unix`` bound a predictable temporary name in the socket
directory, then chmod-ed and chown-ed that name, following links. A user who can write the
directory swaps the fresh socket for a link between the bind and the chmod, and the agent
(root) changes the mode and group of any file they like. Here a real ``nobody`` process makes that
swap at the worst moment (right after the bind); before the fix it made root's 0600 file 0666.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.host import listener
from agent.host.listener import ListenerError, bind_unix
from tests.security.users import NOBODY, NOGROUP, as_user, need_root

pytestmark = pytest.mark.usefixtures("_root_only")


@pytest.fixture
def _root_only():
    need_root()


@pytest.fixture
def victim(open_dir: Path) -> Path:
    """A root-only file another user would like to read."""
    path = open_dir / "victim"
    path.write_text("root's secret\n")
    os.chmod(path, 0o600)
    return path


def _swap_for_link(bound: str, target: str) -> None:
    """What the other user does, as soon as the agent's socket file appears."""
    os.unlink(bound)
    os.symlink(target, bound)


def _racing_socket_module(victim: Path, attempts: list) -> SimpleNamespace:
    """``socket`` as the listener sees it, with ``nobody`` swapping each bound file for a link."""

    class RacingSocket(socket.socket):
        def bind(self, address):
            super().bind(address)
            attempts.append(as_user(lambda: _swap_for_link(address, str(victim))))

    return SimpleNamespace(socket=RacingSocket, AF_UNIX=socket.AF_UNIX, SOCK_STREAM=socket.SOCK_STREAM)


def _socket_dir(open_dir: Path, mode: int, gid: int = 0) -> Path:
    run = open_dir / "run"
    run.mkdir()
    os.chown(run, 0, gid)
    os.chmod(run, mode)
    return run


@pytest.mark.parametrize("mode,gid", [(0o777, 0), (0o770, NOGROUP)], ids=["world-writable", "group-writable"])
@pytest.mark.parametrize("socket_mode,socket_gid", [(0o666, None), (0o660, NOGROUP)], ids=["mode", "mode+group"])
def test_a_swap_after_bind_cannot_redirect_chmod_or_chown(open_dir, victim, monkeypatch, mode, gid,
                                                         socket_mode, socket_gid):
    run = _socket_dir(open_dir, mode, gid)
    attempts: list = []
    monkeypatch.setattr(listener, "socket", _racing_socket_module(victim, attempts))
    before = os.stat(victim)
    try:
        bound = bind_unix(str(run / "agent.sock"), mode=socket_mode, gid=socket_gid)
    except ListenerError:
        bound = None  # refusing to start is fine; changing the victim is not
    try:
        assert attempts, "the swap was not tried"
        after = os.stat(victim)
        assert (stat.S_IMODE(after.st_mode), after.st_gid) == (stat.S_IMODE(before.st_mode), before.st_gid), \
            f"the agent changed {victim}: mode {stat.S_IMODE(after.st_mode):04o} group {after.st_gid}"
        assert "PermissionError" in str(as_user(lambda: open(str(victim)).read()))
        if bound is not None:
            st = os.lstat(run / "agent.sock")
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == socket_mode
            assert socket_gid is None or st.st_gid == socket_gid
    finally:
        if bound is not None:
            bound.sock.close()
            bound.cleanup()


def test_a_name_planted_in_advance_does_not_stop_the_agent(open_dir, victim):
    """The old temporary name was ``.NAME.PID.tmp``: a directory planted there made start-up fail."""
    run = _socket_dir(open_dir, 0o777)
    predicted = str(run / f".agent.sock.{os.getpid()}.tmp")  # the agent's pid, which any user can see
    planted = as_user(lambda: os.mkdir(predicted))
    assert planted is None, planted
    bound = bind_unix(str(run / "agent.sock"), mode=0o660)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(run / "agent.sock"))
    finally:
        bound.sock.close()
        bound.cleanup()


def test_the_socket_gets_its_mode_and_group_and_nothing_is_left_beside_it(sock_dir):
    old_umask = os.umask(0o077)  # the mode is set, not left to the umask
    try:
        bound = bind_unix(str(sock_dir / "agent.sock"), mode=0o660, gid=NOGROUP)
    finally:
        os.umask(old_umask)
    try:
        st = os.lstat(sock_dir / "agent.sock")
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOGROUP
        assert os.listdir(sock_dir) == ["agent.sock"]
    finally:
        bound.sock.close()
        bound.cleanup()
    assert os.listdir(sock_dir) == []


def test_a_failed_bind_leaves_nothing_behind(open_dir, monkeypatch):
    class FailingSocket(socket.socket):
        def listen(self, *args):
            raise OSError(98, "Address already in use")

    monkeypatch.setattr(listener, "socket", SimpleNamespace(socket=FailingSocket, AF_UNIX=socket.AF_UNIX,
                                                            SOCK_STREAM=socket.SOCK_STREAM))
    run = _socket_dir(open_dir, 0o755)
    with pytest.raises(ListenerError, match="cannot create socket .*Address already in use"):
        bind_unix(str(run / "agent.sock"))
    assert os.listdir(run) == []


def test_nobody_can_reach_a_socket_made_for_its_group(open_dir):
    run = _socket_dir(open_dir, 0o755)
    bound = bind_unix(str(run / "agent.sock"), mode=0o660, gid=NOGROUP)
    try:
        bound.sock.setblocking(False)
        connected = as_user(lambda: socket.socket(socket.AF_UNIX).connect(str(run / "agent.sock")), uid=NOBODY)
        assert connected is None, connected
    finally:
        bound.sock.close()
        bound.cleanup()
