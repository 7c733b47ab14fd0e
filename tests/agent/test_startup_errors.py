"""Whatever stops the agent from starting is one line on stderr and exit 2, found before the
flags are read or a socket is bound: no traceback, no socket file left behind."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SEED, write_json
from tests.process import flagsock


@pytest.fixture
def seed_file(tmp_path):
    return write_json(tmp_path / "flags.json", SEED)


def _refused(out, *fragments: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("flagsock serve: "), lines[0]
    assert "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(("option", "value", "named"), [
    ("--allow-write", "no-such-user-fsk", "--allow-write 'no-such-user-fsk': no such user"),
    ("--allow-write-group", "no-such-group-fsk", "--allow-write-group 'no-such-group-fsk': no such group"),
    ("--socket-group", "no-such-group-fsk", "--socket-group 'no-such-group-fsk': no such group"),
])
def test_unknown_user_or_group_is_refused_before_anything_is_bound(seed_file, sock_dir, option, value, named):
    sock = sock_dir / "a.sock"
    out = flagsock("serve", "--flags", str(seed_file), "--socket", str(sock), option, value)
    _refused(out, named)
    assert not sock.exists()
    assert os.listdir(sock_dir) == []


@pytest.mark.parametrize(("fds", "named"), [
    ("x1", "LISTEN_FDS='x1' is not a decimal number"),
    ("-1", "LISTEN_FDS='-1' is negative"),
    ("3", "LISTEN_FDS"),
])
def test_bad_socket_activation_is_one_line_not_a_traceback(seed_file, sock_dir, fds, named):
    # LISTEN_PID must name the agent itself: the shell sets it to its own pid and execs the agent.
    command = (f'LISTEN_PID=$$ LISTEN_FDS={shlex.quote(fds)} exec {shlex.quote(sys.executable)} -m agent serve '
               f'--flags {shlex.quote(str(seed_file))} --socket {shlex.quote(str(sock_dir / "b.sock"))}')
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20,
                         cwd=Path(__file__).resolve().parents[2])
    _refused(out, named)


def test_a_socket_in_a_missing_directory_is_one_line(seed_file, tmp_path):
    out = flagsock("serve", "--flags", str(seed_file), "--socket", str(tmp_path / "nowhere" / "s.sock"))
    _refused(out, "directory", "does not exist")


@pytest.mark.parametrize("args", [
    ["--max-connections", "0"],
    ["--socket-mode", "999"],
    ["--fractional", "v9"],
])
def test_bad_settings_exit_2_with_the_setting_named(seed_file, sock_dir, args):
    out = flagsock("serve", "--flags", str(seed_file), "--socket", str(sock_dir / "c.sock"), *args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert args[0].lstrip("-") in out.stderr
