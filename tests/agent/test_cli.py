"""The ``flagsock`` command as a user runs it: real subprocesses, real sockets, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from tests.helpers import SEED, write_json
from tests.process import AgentProcess, flagsock, wait_for_socket


@pytest.fixture
def seed_file(tmp_path):
    return write_json(tmp_path / "flags.json", SEED)


@pytest.fixture
def agent(seed_file, sock_dir):
    sock = str(sock_dir / "cli.sock")
    with AgentProcess(["--flags", str(seed_file), "--socket", sock]) as running:
        yield running


def test_get_prints_the_value_for_a_user(agent):
    env = {"FLAGSOCK_SOCKET": agent.socket_path}
    assert flagsock("get", "dark_mode", env=env).stdout == "true\n"
    assert flagsock("get", "experimental_search", env=env).stdout == "false\n"
    assert flagsock("get", "new_checkout_flow", "--user", "user_123", env=env).stdout == "true\n"
    out = flagsock("get", "new_checkout_flow", "--context", '{"targetingKey": "user_456"}', "--json",
                   "--socket", agent.socket_path)
    result = json.loads(out.stdout)
    assert result["value"] is True and result["reason"] == "TARGETING_MATCH" and result["variant"] == "on"


def test_get_of_a_missing_flag_fails_with_the_code(agent):
    out = flagsock("get", "nope", "--socket", agent.socket_path)
    assert out.returncode == 1
    assert "FLAG_NOT_FOUND" in out.stderr and "nope" in out.stderr


def test_client_commands_without_an_agent_say_so_and_exit_3(sock_dir):
    out = flagsock("get", "x", "--socket", str(sock_dir / "none.sock"))
    assert out.returncode == 3 and "flagsock serve" in out.stderr
    out = flagsock("health", env={"FLAGSOCK_SOCKET": str(sock_dir / "none.sock")})
    assert out.returncode == 3 and str(sock_dir / "none.sock") in out.stderr


def test_flags_health_stats_ping(agent):
    s = ["--socket", agent.socket_path]
    flags = flagsock("flags", "--user", "user_123", *s)
    assert flags.returncode == 0
    assert {line.split()[0] for line in flags.stdout.splitlines()} == set(SEED["flags"])
    health = flagsock("health", *s)
    assert health.returncode == 0 and health.stdout.startswith("ok: revision 1, 3 flags")
    stats = json.loads(flagsock("stats", *s).stdout)
    assert "requests" in stats
    assert flagsock("ping", *s).returncode == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["get", "x", "--context", "{not json"], "--context is not valid JSON"),
        (["get", "x", "--context", "[1]"], "must be a JSON object"),
        (["serve", "--flags", "f.json", "--socket-mode", "99"], "socket-mode must be octal"),
        (["serve", "--flags", "f.json", "--max-connections", "0"], "at least 1"),
        (["serve", "--flags", "f.json", "--fractional", "v4"], "invalid choice"),
        (["serve", "--socket", "/tmp/x.sock"], "no flag files"),
        (["set", "x", "--rollout", "150"], "0 to 100"),
        (["set", "x", "--if-revision", "abc", "--on"], "revision number"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(args, fragment):
    out = flagsock(*args)
    assert out.returncode == 2, out
    assert fragment in out.stderr


def test_serve_rejects_a_bad_config_file(tmp_path):
    cfg = tmp_path / "flagsock.toml"
    cfg.write_text('flags = ["f.json"]\nmax_conections = 5\n')
    out = flagsock("serve", "--config", str(cfg))
    assert out.returncode == 2 and "unknown setting 'max_conections'" in out.stderr


def test_cli_offers_exactly_the_engines_bucketing_versions(tmp_path):
    from agent.cli.parser import FRACTIONAL_VERSIONS
    from agent.engine.rules.fractional import VERSIONS

    assert FRACTIONAL_VERSIONS == VERSIONS
    cfg = tmp_path / "flagsock.toml"
    cfg.write_text('flags = ["f.json"]\nfractional = "v9"\n')
    out = flagsock("serve", "--config", str(cfg))
    assert out.returncode == 2 and "fractional must be one of v1, v2, v3, not 'v9'" in out.stderr


def test_validate_compiles_for_the_legacy_bucketing_too(tmp_path):
    flags = tmp_path / "legacy.json"
    write_json(flags, {"flags": {"split": {
        "state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
        "targeting": {"fractional": [["a", 50], ["b", 50]]},
    }}})
    out = flagsock("validate", "--fractional", "v1", str(flags))
    assert out.returncode == 0, out


def test_validate_prints_every_problem_of_a_file_in_one_run(tmp_path):
    bad = write_json(tmp_path / "reviewed.json", {"flags": {
        "banner": {"state": "ENABLED", "variants": {"red": "#f00", "blue": 255}, "defaultVariant": "green",
                   "targeting": {"if": [{"no_such_op": []}, "red", {"fractional": [["red", -1], ["blue", 1]]}]}},
        "checkout": {"enabled": "yes", "rollout_percentage": 120},
    }})
    out = flagsock("validate", str(bad))
    assert out.returncode == 1
    assert [line.split(": ")[1] for line in out.stdout.splitlines()] == [
        "$.flags.banner.variants.blue", "$.flags.banner.defaultVariant", "$.flags.banner.targeting.if[0]",
        "$.flags.banner.targeting.if[2].fractional[0][1]", "$.flags.checkout.enabled",
        "$.flags.checkout.rollout_percentage",
    ]
    assert all(line.startswith(f"{bad}: $.flags.") for line in out.stdout.splitlines())


def test_serve_reads_a_config_file(tmp_path, sock_dir, seed_file):
    cfg = tmp_path / "flagsock.toml"
    sock = sock_dir / "cfg.sock"
    cfg.write_text(f'flags = ["{seed_file.name}"]\nsocket = "{sock}"\nsocket-mode = "0600"\n')
    with AgentProcess(["--config", str(cfg)], socket_path=str(sock)):
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        assert flagsock("get", "dark_mode", "--socket", str(sock)).stdout == "true\n"


def test_validate_accepts_good_files_and_names_every_problem(tmp_path, seed_file):
    assert flagsock("validate", str(seed_file)).returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flags": {
        "a": {"enabled": "yes"},
        "b": {"enabled": True, "rollout_percentage": 101},
    }}))
    out = flagsock("validate", str(seed_file), str(bad))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert any(line.startswith(f"{bad}: $.flags.a.enabled") for line in lines), lines
    assert any(line.startswith(f"{bad}: $.flags.b.rollout_percentage") for line in lines), lines
    assert flagsock("validate", str(tmp_path / "missing.json")).returncode == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_with_exit_0_and_remove_the_socket(seed_file, sock_dir, signum):
    sock = sock_dir / "sig.sock"
    with AgentProcess(["--flags", str(seed_file), "--socket", str(sock)]) as agent:
        idle = socket.socket(socket.AF_UNIX)
        idle.connect(str(sock))  # an idle client must not hold up the exit
        code, err = agent.stop(signum, timeout=5)
        idle.close()
    assert code == 0, err
    assert not sock.exists()


def test_sighup_reloads(seed_file, sock_dir):
    sock = str(sock_dir / "hup.sock")
    with AgentProcess(["--flags", str(seed_file), "--socket", sock]) as agent:
        doc = json.loads(seed_file.read_text())
        doc["flags"]["dark_mode"]["enabled"] = False
        # Written in place without changing size or mtime granularity tricks: SIGHUP must pick it up
        # even if the watcher has not yet.
        write_json(seed_file, doc)
        agent.send_signal(signal.SIGHUP)
        wait_for_socket(sock)
        deadline_ok = False
        for _ in range(100):
            if flagsock("get", "dark_mode", "--socket", sock).stdout == "false\n":
                deadline_ok = True
                break
        assert deadline_ok
        code, err = agent.stop()
    assert code == 0
    assert "SIGHUP" in err


def test_serve_raises_its_open_file_soft_limit_to_fit_max_connections(seed_file, sock_dir):
    """Started with a soft limit of 256, the agent lifts it to fit --max-connections 2000."""
    import subprocess
    import sys

    sock = sock_dir / "nofile.sock"
    code = (
        "import resource, runpy, sys;"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]));"
        f"sys.argv = ['flagsock', 'serve', '--flags', {str(seed_file)!r}, '--socket', {str(sock)!r}, '--max-connections', '2000'];"
        "runpy.run_module('agent', run_name='__main__')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(sock, proc)
        limits = open(f"/proc/{proc.pid}/limits").read()
        soft = next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3]
        assert int(soft) >= 2000 + 64
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _read_line(proc, timeout: float = 5.0) -> str:
    """The next line the process prints, or fail after ``timeout`` seconds."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), f"no output within {timeout} s"
    return proc.stdout.readline()


@pytest.mark.parametrize("as_json", [False, True])
def test_watch_prints_a_line_per_change_and_exits_when_the_agent_stops(seed_file, sock_dir, as_json):
    import subprocess

    from tests.process import FLAGSOCK

    sock = str(sock_dir / "watch.sock")
    with AgentProcess(["--flags", str(seed_file), "--socket", sock]) as agent:
        args = [*FLAGSOCK, "watch", "--socket", sock, *(["--json"] if as_json else [])]
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1) as watch:
            first = _read_line(watch)
            doc = json.loads(seed_file.read_text())
            doc["flags"]["dark_mode"]["enabled"] = False
            write_json(seed_file, doc)
            change = _read_line(watch)
            if as_json:
                assert json.loads(first) == {"event": "subscribed", "revision": 1}
                assert json.loads(change) == {"event": "changed", "revision": 2, "flags": {"dark_mode": "updated"}}
            else:
                assert first == "watching revision 1\n"
                assert change == "revision 2: dark_mode updated\n"
            agent.stop()
            assert watch.wait(timeout=10) == 3
            assert "closed the connection" in watch.stderr.read()
