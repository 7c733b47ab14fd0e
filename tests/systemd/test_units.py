"""The shipped units, sysusers.d and tmpfiles.d files, checked by systemd's own tools."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SOCKET_UNIT = UNITS / "flagsock.socket"
SERVICE_UNIT = UNITS / "flagsock.service"
MAX_EXPOSURE = 1.5


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install systemd)")
    return path


def settings(unit: Path) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value assigned, in order (units repeat keys)."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found[section, key.strip()].append(value.strip())
    return found


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    # verify insists that ExecStart's program exists; the test host has no /usr/bin/flagsock.
    for unit in (SOCKET_UNIT, SERVICE_UNIT):
        text = unit.read_text().replace("/usr/bin/flagsock", sys.executable)
        (tmp_path / unit.name).write_text(text)
    done = subprocess.run(
        [
            analyze,
            "verify",
            "--man=no",
            str(tmp_path / "flagsock.socket"),
            str(tmp_path / "flagsock.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [line for line in done.stderr.splitlines() if "flagsock" in line]
    assert done.returncode == 0 and not complaints, done.stderr


def test_service_scores_safe_in_systemd_analyze_security() -> None:
    analyze = tool("systemd-analyze")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(SERVICE_UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for flagsock\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_socket_unit_listens_where_clients_look_by_default() -> None:
    socket_settings = settings(SOCKET_UNIT)
    assert socket_settings["Socket", "ListenStream"] == ["/run/flagsock/flagsock.sock"]
    assert socket_settings["Socket", "SocketMode"] == ["0660"]
    assert socket_settings["Socket", "SocketGroup"] == ["flagsock"]
    assert socket_settings["Socket", "Accept"] == ["no"]


def test_service_is_a_notify_service_on_the_inherited_socket() -> None:
    service = settings(SERVICE_UNIT)
    assert service["Service", "Type"] == ["notify"]
    assert service["Service", "NotifyAccess"] == ["main"]
    assert service["Service", "ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["Service", "User"] == service["Service", "Group"] == ["flagsock"]
    (exec_start,) = service["Service", "ExecStart"]
    assert exec_start.startswith("/usr/bin/flagsock serve ")
    assert "--socket" not in exec_start
    # The flag file the agent writes must be inside a directory it may write.
    flags = re.search(r"--flags (\S+)", exec_start).group(1)
    writable = service["Service", "ReadWritePaths"]
    assert any(flags.startswith(path.rstrip("/") + "/") for path in writable), writable
    # /run/flagsock is the socket unit's; a RuntimeDirectory would delete the socket on stop.
    assert ("Service", "RuntimeDirectory") not in service


@pytest.mark.skipif(os.geteuid() != 0, reason="creating users and chown need root")
def test_sysusers_and_tmpfiles_create_the_user_and_seed_the_flag_file(tmp_path: Path) -> None:
    sysusers, tmpfiles = tool("systemd-sysusers"), tool("systemd-tmpfiles")
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", tmp_path / "etc" / name)
    for command, conf in (
        (sysusers, UNITS / "sysusers.d" / "flagsock.conf"),
        (tmpfiles, UNITS / "tmpfiles.d" / "flagsock.conf"),
    ):
        extra = ["--create"] if command == tmpfiles else []
        done = subprocess.run(
            [command, f"--root={tmp_path}", *extra, "-"],
            input=conf.read_text(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    entry = re.search(r"^flagsock:x:(\d+):(\d+):[^:]*:/var/lib/flagsock:(\S+)$", passwd, re.M)
    assert entry, passwd
    uid = int(entry.group(1))
    state = tmp_path / "var" / "lib" / "flagsock"
    assert (state.stat().st_uid, state.stat().st_mode & 0o777) == (uid, 0o700)
    flags = state / "flags.json"
    assert flags.read_text() == '{"flags":{}}'
    assert (flags.stat().st_uid, flags.stat().st_mode & 0o777) == (uid, 0o600)
