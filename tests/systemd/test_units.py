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
HTTP_SOCKET_UNIT = UNITS / "flagsock-http.socket"
SERVICE_UNIT = UNITS / "flagsock.service"
DROP_INS = UNITS / "flagsock.service.d"
REMOTE_DROP_IN = DROP_INS / "remote-sources.conf.example"
FLEET_DROP_IN = DROP_INS / "fleet.conf.example"
#: The shipped service's score: what it scored when the HTTP socket and the drop-ins came, and
#: must not get worse (lower is safer).
DEFAULT_EXPOSURE = 0.5
#: The most any shipped combination (the service with the remote-sources drop-in) may score.
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
    # A line ending in a backslash continues on the next one, as systemd reads it.
    for raw in unit.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found[section, key.strip()].append(value.strip())
    return found


def install(directory: Path, *, drop_ins: bool) -> Path:
    """Copy the units into ``directory`` as a package would install them (with the example
    drop-ins installed under their ``.conf`` names when ``drop_ins``); returns the service's path.

    verify insists that ExecStart's program exists; the test host has no /usr/bin/flagsock.
    """
    for unit in (SOCKET_UNIT, HTTP_SOCKET_UNIT, SERVICE_UNIT):
        (directory / unit.name).write_text(unit.read_text().replace("/usr/bin/flagsock", sys.executable))
    if drop_ins:
        (directory / DROP_INS.name).mkdir()
        for drop_in in (REMOTE_DROP_IN, FLEET_DROP_IN):
            text = drop_in.read_text().replace("/usr/bin/flagsock", sys.executable)
            (directory / DROP_INS.name / drop_in.name.removesuffix(".example")).write_text(text)
    return directory / SERVICE_UNIT.name


@pytest.mark.parametrize("drop_ins", [False, True], ids=["shipped", "with-the-drop-ins"])
def test_units_pass_systemd_analyze_verify(tmp_path: Path, drop_ins: bool) -> None:
    analyze = tool("systemd-analyze")
    service = install(tmp_path, drop_ins=drop_ins)
    done = subprocess.run(
        [
            analyze,
            "verify",
            "--man=no",
            str(tmp_path / SOCKET_UNIT.name),
            str(tmp_path / HTTP_SOCKET_UNIT.name),
            str(service),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Warnings (an unknown key, a bad value in a drop-in) leave the exit status 0: read them.
    complaints = [line for line in done.stderr.splitlines() if "flagsock" in line]
    assert done.returncode == 0 and not complaints, done.stderr


def exposure(service: Path) -> float:
    """``systemd-analyze security``'s overall exposure of ``service`` (with the drop-ins beside it)."""
    done = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(service)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for flagsock\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


def test_service_scores_safe_in_systemd_analyze_security_and_no_worse_than_before() -> None:
    assert exposure(SERVICE_UNIT) <= DEFAULT_EXPOSURE


def test_service_with_the_remote_sources_drop_in_still_scores_within_the_target(tmp_path: Path) -> None:
    opened = exposure(install(tmp_path, drop_ins=True))
    # It does open something (the drop-ins were read), and not much.
    assert DEFAULT_EXPOSURE < opened <= MAX_EXPOSURE


def test_socket_unit_listens_where_clients_look_by_default() -> None:
    socket_settings = settings(SOCKET_UNIT)
    assert socket_settings["Socket", "ListenStream"] == ["/run/flagsock/flagsock.sock"]
    assert socket_settings["Socket", "SocketMode"] == ["0660"]
    assert socket_settings["Socket", "SocketGroup"] == ["flagsock"]
    assert socket_settings["Socket", "Accept"] == ["no"]
    # Any name but "http" is the NDJSON socket; this one says so.
    assert socket_settings["Socket", "FileDescriptorName"] == ["flagsock"]


def test_http_socket_unit_hands_the_agent_loopback_and_unix_sockets_named_http() -> None:
    from agent.frontends.http.address import is_loopback_host, parse_http_address
    from agent.host.activation import HTTP_FDNAME

    http = settings(HTTP_SOCKET_UNIT)
    assert http["Socket", "FileDescriptorName"] == [HTTP_FDNAME]
    assert http["Socket", "Service"] == [SERVICE_UNIT.name]
    assert http["Socket", "Accept"] == ["no"]
    listens = http["Socket", "ListenStream"]
    assert "/run/flagsock/http.sock" in listens
    tcp = [parse_http_address(text) for text in listens if not text.startswith("/")]
    assert tcp and all(is_loopback_host(address.host) for address in tcp), listens
    # The Unix socket is gated like the NDJSON one; the TCP one by the socket's own IP filter.
    ndjson = settings(SOCKET_UNIT)
    for key in ("SocketUser", "SocketGroup", "SocketMode", "DirectoryMode"):
        assert http["Socket", key] == ndjson["Socket", key], key
    assert http["Socket", "IPAddressDeny"] == ["any"]
    assert http["Socket", "IPAddressAllow"] == ["localhost"]


def test_remote_sources_drop_in_opens_the_network_and_nothing_else() -> None:
    service, drop_in = settings(SERVICE_UNIT), settings(REMOTE_DROP_IN)
    assert service["Service", "PrivateNetwork"] == ["yes"]
    assert service["Service", "RestrictAddressFamilies"] == ["AF_UNIX"]
    assert service["Service", "IPAddressDeny"] == ["any"]
    assert set(drop_in) == {("Service", "PrivateNetwork"), ("Service", "RestrictAddressFamilies"),
                            ("Service", "IPAddressAllow")}
    assert drop_in["Service", "PrivateNetwork"] == ["no"]
    assert drop_in["Service", "RestrictAddressFamilies"] == ["AF_INET AF_INET6"]
    assert drop_in["Service", "IPAddressAllow"][-1] == "localhost"


def test_fleet_drop_in_runs_a_command_the_agent_accepts_with_credentials_from_systemd() -> None:
    from agent.cli.parser import build_parser

    fleet = settings(FLEET_DROP_IN)
    empty, exec_start = fleet["Service", "ExecStart"]
    assert empty == ""
    program, *args = exec_start.replace("%d", "/run/credentials/flagsock.service").split()
    assert program == "/usr/bin/flagsock"
    parsed = build_parser().parse_args(args)
    assert parsed.flags[0].startswith("etcd://") and parsed.context_value == ["host=%H", "machine_id=%m"]
    # Every secret and TLS file comes from systemd's credentials, none from a path the agent's
    # user would need to read.
    credentials = dict(line.split(":", 1) for line in fleet["Service", "LoadCredential"])
    given = [parsed.etcd_password_file, parsed.etcd_ca, parsed.etcd_cert, parsed.etcd_key]
    assert given == [f"/run/credentials/flagsock.service/{name}" for name in credentials]
    assert all(path.startswith("/etc/flagsock/etcd/") for path in credentials.values())


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
