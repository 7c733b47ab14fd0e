"""The write path uses what it checked: a link that appears after the check is not followed.

Issue 13, point 3, fourth finding (its second half): ``set``/``delete`` checked that the flag file
is not a symlink, then stat-ed and replaced the path, following whatever stood there by then. The
race is simulated at its worst moment (right after the check): the flag file becomes a link to a
root-only flag document. Before the fix, the agent copied that document, edited, into the flag
file and served its flags to everyone; now the write is refused and nothing changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.writes import durable, writer
from tests.helpers import SEED, LineClient, write_json

SECRET = {"flags": {"stolen_secret": {"name": "stolen_secret", "enabled": True, "rollout_percentage": None,
                                      "allowed_users": []},
                    "dark_mode": SEED["flags"]["dark_mode"]}}  # so that a delete of it goes all the way


def _swap_after_check(monkeypatch, path: Path, target: Path) -> None:
    real = writer.why_not_writable

    def checked_then_swapped(p: str) -> str | None:
        reason = real(p)
        if reason is None:
            os.unlink(path)
            os.symlink(target, path)
        return reason

    monkeypatch.setattr(writer, "why_not_writable", checked_then_swapped)


@pytest.mark.parametrize("request_", [
    {"op": "set", "flag": "dark_mode", "enabled": False},
    {"op": "set", "flag": "fresh", "enabled": True},
    {"op": "delete", "flag": "dark_mode"},
], ids=["set-existing", "set-new", "delete"])
async def test_a_link_swapped_in_after_the_check_is_not_followed(request_, tmp_path, start_agent, monkeypatch):
    secret = write_json(tmp_path / "secret.json", SECRET)
    os.chmod(secret, 0o600)
    secret_bytes = secret.read_bytes()
    path = write_json(tmp_path / "flags.json", SEED)
    running = await start_agent([path])
    _swap_after_check(monkeypatch, path, secret)
    async with await LineClient.connect(running.socket_path) as c:
        answer = await c.request(request_)
        assert answer["ok"] is False and answer["error"]["code"] == "READ_ONLY", answer
        assert "symbolic link" in answer["error"]["message"], answer
        stolen = await c.request({"op": "evaluate", "flag": "stolen_secret"})
        assert stolen["ok"] is False and stolen["error"]["code"] == "FLAG_NOT_FOUND", stolen
    assert path.is_symlink() and secret.read_bytes() == secret_bytes
    assert os.stat(secret).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["flags.json", "secret.json"]


def test_replace_durably_never_follows_a_link_at_the_path(tmp_path):
    target = write_json(tmp_path / "target.json", SEED)
    os.chmod(target, 0o604)
    link = tmp_path / "flags.json"
    link.symlink_to(target)
    with pytest.raises(durable.UnsafeReplace, match="symbolic link"):
        durable.replace_durably(str(link), b'{"flags": {}}')
    assert link.is_symlink() and os.stat(target).st_mode & 0o777 == 0o604
    assert sorted(os.listdir(tmp_path)) == ["flags.json", "target.json"]


@pytest.mark.parametrize("make", ["fifo", "directory"])
def test_replace_durably_refuses_what_is_no_longer_a_regular_file(tmp_path, make):
    path = tmp_path / "flags.json"
    os.mkfifo(path) if make == "fifo" else path.mkdir()
    with pytest.raises(durable.UnsafeReplace, match="no longer a regular file"):
        durable.replace_durably(str(path), b'{"flags": {}}')
    assert sorted(os.listdir(tmp_path)) == ["flags.json"]
