"""inherited_sockets(): the sd_listen_fds(3) protocol.

Cases that hand over a descriptor run in a child interpreter, which puts the socket on fd 3
itself: doing that here would clobber whatever pytest keeps on fd 3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.host.activation import ActivationError, inherited_sockets

REPO = Path(__file__).resolve().parents[2]

_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

# Run as: python -c CHILD KIND[@NAME]... ; puts one descriptor of each KIND on fd 3, 4, ..., sets
# the LISTEN_* variables for itself (NAME, else name0, name1, ...), calls inherited_sockets() and
# prints what it saw as JSON.
CHILD = r"""
import json, os, socket, sys, tempfile

from agent.host.activation import ActivationError, inherited_sockets

workdir = tempfile.mkdtemp()


def make(kind, index):
    path = os.path.join(workdir, f"{index}.sock")
    if kind == "file":
        return os.open(path, os.O_CREAT | os.O_RDWR), None
    family = {"tcp": socket.AF_INET, "tcp6": socket.AF_INET6, "tcp-bound": socket.AF_INET,
              "udp": socket.AF_INET}.get(kind, socket.AF_UNIX)
    sock_type = socket.SOCK_DGRAM if kind in ("unix-dgram", "udp") else socket.SOCK_STREAM
    sock = socket.socket(family, sock_type)
    sock.bind({socket.AF_INET: ("127.0.0.1", 0), socket.AF_INET6: ("::1", 0)}.get(family, path))
    if kind in ("unix-listening", "tcp", "tcp6"):
        sock.listen()
    address = sock.getsockname() if family != socket.AF_UNIX else path
    return sock.detach(), address


kinds = [arg.partition("@")[0] for arg in sys.argv[1:]]
names = [arg.partition("@")[2] or f"name{i}" for i, arg in enumerate(sys.argv[1:])]
# Move every descriptor above the target range first, so placing one cannot close another.
made = [make(kind, i) for i, kind in enumerate(kinds)]
high = [os.dup(fd) if fd < 3 + len(kinds) else fd for fd, _ in made]
for fd, (orig, _) in zip(high, made):
    if fd != orig:
        os.close(orig)
for target, fd in enumerate(high, start=3):
    os.dup2(fd, target)
    os.close(fd)

os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(kinds))
os.environ["LISTEN_FDNAMES"] = ":".join(names)

report = {}
try:
    sockets = inherited_sockets()
except ActivationError as exc:
    report["error"] = str(exc)
    report["fd3_still_open"] = os.fstat(3) is not None
else:
    report["fds"] = [s.sock.fileno() for s in sockets]
    report["names"] = [s.name for s in sockets]
    report["http"] = [s.serves_http for s in sockets]
    report["inheritable"] = [os.get_inheritable(s.sock.fileno()) for s in sockets]
    accepted = []
    for inherited, (_, address) in zip(sockets, made):
        client = socket.socket(inherited.sock.family, socket.SOCK_STREAM)
        client.connect(address)
        conn, _ = inherited.sock.accept()
        accepted.append(conn is not None)
    report["accepted"] = accepted
report["variables_left"] = sorted(k for k in os.environ if k.startswith("LISTEN_"))
print(json.dumps(report))
"""


def run_child(*kinds: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *kinds],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def listen_env(monkeypatch: pytest.MonkeyPatch):
    """Set LISTEN_* in this process (only for cases that never touch a descriptor)."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def assert_variables_cleared() -> None:
    assert [name for name in _VARIABLES if name in os.environ] == []


def test_not_activated_returns_no_sockets(listen_env) -> None:
    assert inherited_sockets() == []


def test_variables_for_another_pid_are_ignored_and_cleared(listen_env) -> None:
    listen_env(LISTEN_PID=str(os.getppid()), LISTEN_FDS="1", LISTEN_FDNAMES="flagsock")
    assert inherited_sockets() == []
    assert_variables_cleared()


def test_zero_descriptors_for_this_pid_returns_no_sockets(listen_env) -> None:
    listen_env(LISTEN_PID=str(os.getpid()), LISTEN_FDS="0")
    assert inherited_sockets() == []
    assert_variables_cleared()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"LISTEN_PID": "12ab", "LISTEN_FDS": "1"}, "LISTEN_PID='12ab' is not a decimal number"),
        ({"LISTEN_FDS": "one"}, "LISTEN_FDS='one' is not a decimal number"),
        ({"LISTEN_FDS": "-1"}, "negative"),
        ({"LISTEN_FDS": "0", "LISTEN_FDNAMES": "a"}, "names 1 descriptors but LISTEN_FDS=0"),
    ],
)
def test_malformed_variables_are_refused_and_cleared(listen_env, values, words) -> None:
    listen_env(**{"LISTEN_PID": str(os.getpid()), **values})
    with pytest.raises(ActivationError, match=words):
        inherited_sockets()
    assert_variables_cleared()


def test_listening_unix_socket_is_adopted_close_on_exec_and_variables_cleared() -> None:
    report = run_child("unix-listening")
    assert report == {
        "fds": [3],
        "names": ["name0"],
        "http": [False],
        "inheritable": [False],
        "accepted": [True],
        "variables_left": [],
    }


def test_several_sockets_come_back_in_descriptor_order() -> None:
    report = run_child("unix-listening", "unix-listening")
    assert report["fds"] == [3, 4]
    assert report["inheritable"] == [False, False]
    assert report["accepted"] == [True, True]


def test_sockets_named_http_may_be_tcp_or_unix_and_are_told_apart_by_name() -> None:
    report = run_child("unix-listening@flagsock", "tcp@http", "tcp6@http", "unix-listening@http")
    assert report["fds"] == [3, 4, 5, 6]
    assert report["names"] == ["flagsock", "http", "http", "http"]
    assert report["http"] == [False, True, True, True]
    assert report["inheritable"] == [False] * 4
    assert report["accepted"] == [True] * 4


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        ("tcp", r"inherited fd 3 \(name 'name0'\) is an AF_INET SOCK_STREAM socket; .*NDJSON only on a Unix "
                r"stream socket.*FileDescriptorName=http"),
        ("tcp@flagsock", r"inherited fd 3 \(name 'flagsock'\) is an AF_INET SOCK_STREAM socket"),
        ("udp@http", r"inherited fd 3 \(name 'http'\) is an AF_INET SOCK_DGRAM socket; flagsock serves HTTP on a "
                     r"stream socket"),
        ("tcp-bound@http", r"inherited fd 3 \(name 'http'\) is an AF_INET stream socket that is not listening"),
        ("unix-dgram", r"is an AF_UNIX SOCK_DGRAM socket; .* ListenStream="),
        ("unix-bound", r"not listening .* Accept=no"),
        ("file", r"inherited fd 3 \(name 'name0'\) is not an open socket"),
    ],
)
def test_descriptor_that_is_not_a_listening_unix_stream_socket_is_refused(kind, pattern) -> None:
    report = run_child(kind)
    assert "error" in report, report
    assert re.search(pattern, report["error"]), report["error"]
    # Refusing must not close the descriptor behind the launcher's back.
    assert report["fd3_still_open"]
    assert report["variables_left"] == []
