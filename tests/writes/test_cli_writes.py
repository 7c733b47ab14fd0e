"""``flagsock set`` and ``flagsock delete`` as a user runs them: real processes, real agent."""

from __future__ import annotations

import json

import pytest

from tests.helpers import SEED, write_json
from tests.process import AgentProcess, flagsock


@pytest.fixture
def seed(tmp_path):
    return write_json(tmp_path / "flags.json", SEED)


@pytest.fixture
def agent(seed, sock_dir):
    with AgentProcess(["--flags", str(seed), "--socket", str(sock_dir / "w.sock")]) as running:
        yield running


def run(agent, *args):
    return flagsock(*args, env={"FLAGSOCK_SOCKET": agent.socket_path})


def flag(path, key):
    return json.loads(path.read_text())["flags"].get(key)


def test_set_on_off_rollout_and_allow(agent, seed):
    done = run(agent, "set", "dark_mode", "--off")
    assert (done.returncode, done.stdout) == (0, "dark_mode set; revision 2\n")
    assert flag(seed, "dark_mode")["enabled"] is False
    assert run(agent, "set", "dark_mode", "--on").returncode == 0
    assert run(agent, "set", "new_checkout_flow", "--rollout", "40").returncode == 0
    assert flag(seed, "new_checkout_flow")["rollout_percentage"] == 40
    assert flag(seed, "new_checkout_flow")["allowed_users"] == ["user_123", "user_456"], "a rollout keeps the allow list"
    assert run(agent, "set", "beta", "--on", "--rollout", "0", "--allow", "ann", "bob").returncode == 0
    assert flag(seed, "beta") == {"name": "beta", "enabled": True, "rollout_percentage": 0, "allowed_users": ["ann", "bob"]}
    assert run(agent, "get", "beta", "--user", "bob").stdout == "true\n"
    assert run(agent, "get", "beta", "--user", "carl").stdout == "false\n"


def test_set_definition_inline_and_from_a_file(agent, seed, tmp_path):
    definition = {"state": "ENABLED", "variants": {"a": "x", "b": "y"}, "defaultVariant": "b"}
    assert run(agent, "set", "color", "--definition", json.dumps(definition)).returncode == 0
    assert flag(seed, "color") == definition
    source = tmp_path / "def.json"
    definition["defaultVariant"] = "a"
    source.write_text(json.dumps(definition))
    done = run(agent, "set", "color", "--definition", f"@{source}")
    assert done.returncode == 0, done.stderr
    assert run(agent, "get", "color").stdout == "x\n"


def test_delete_and_if_revision(agent, seed):
    assert run(agent, "delete", "dark_mode", "--if-revision", "1").stdout == "dark_mode deleted; revision 2\n"
    assert flag(seed, "dark_mode") is None
    stale = run(agent, "set", "x", "--on", "--if-revision", "1")
    assert stale.returncode == 1
    assert "CONFLICT" in stale.stderr and "revision 2 is served" in stale.stderr
    missing = run(agent, "delete", "dark_mode")
    assert missing.returncode == 1 and "FLAG_NOT_FOUND" in missing.stderr


def test_refusals_exit_1_with_the_reason_and_change_nothing(agent, seed):
    before = seed.read_bytes()
    bad = run(agent, "set", "x", "--definition", '{"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "z"}')
    assert bad.returncode == 1
    assert "INVALID_FLAG" in bad.stderr and "defaultVariant" in bad.stderr
    usage = run(agent, "set", "x", "--definition", "{}", "--rollout", "5")
    assert usage.returncode == 2
    assert seed.read_bytes() == before


def test_read_only_and_symlinked_sources_say_why(seed, sock_dir, tmp_path):
    with AgentProcess(["--flags", str(seed), "--socket", str(sock_dir / "r.sock"), "--read-only"]) as agent:
        done = run(agent, "set", "x", "--on")
        assert done.returncode == 1 and "READ_ONLY" in done.stderr and "--read-only" in done.stderr
    link = tmp_path / "link.json"
    link.symlink_to(seed)
    with AgentProcess(["--flags", str(link), "--socket", str(sock_dir / "l.sock")]) as agent:
        done = run(agent, "delete", "dark_mode")
        assert done.returncode == 1 and "READ_ONLY" in done.stderr and "symbolic link" in done.stderr


def test_write_to_that_is_not_a_source_is_a_usage_error(seed, sock_dir, tmp_path):
    other = write_json(tmp_path / "other.json", SEED)
    done = flagsock("serve", "--flags", str(seed), "--flags", str(other), "--write-to", str(tmp_path / "nope.json"),
                    "--socket", str(sock_dir / "x.sock"))
    assert done.returncode == 2 and "write-to" in done.stderr and "not one of the flag files" in done.stderr


def test_write_to_and_allow_write_from_the_config_file(seed, sock_dir, tmp_path):
    other = write_json(tmp_path / "other.json", {"flags": {"o": {"enabled": True}}})
    config = tmp_path / "agent.toml"
    config.write_text(f'flags = ["{seed.name}", "{other.name}"]\nwrite_to = "{other.name}"\nallow_write = ["nobody"]\n')
    with AgentProcess(["--config", str(config), "--socket", str(sock_dir / "c.sock")]) as agent:
        assert run(agent, "set", "o", "--off").returncode == 0
    assert flag(other, "o") == {"enabled": False}
