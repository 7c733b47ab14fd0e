"""A flag path another user can change is refused, and the reason is the source's load error.

Issue 13, point 3, first finding: a root agent whose flag file lies in a world-writable directory
followed a symlink another user planted there and served that user a root-only file. Every
"refused" layout below was loaded (and the secret served) before agent/sources/trust.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from agent.sources.base import LoadOptions, SourceState
from agent.sources.files import FileSource
from tests.helpers import SEED, LineClient, write_json
from tests.security.users import NOBODY, NOGROUP, as_user, need_root

SECRET = {"flags": {"stolen_secret": {"name": "stolen_secret", "enabled": True, "rollout_percentage": None,
                                      "allowed_users": []}}}

pytestmark = pytest.mark.usefixtures("_root_only")


@pytest.fixture
def _root_only():
    need_root()


@pytest.fixture
def secret(open_dir: Path) -> Path:
    """A flag document only root may read, which no other user may learn through the agent."""
    path = write_json(open_dir / "secret.json", SECRET)
    os.chmod(path, 0o600)
    return path


def load(path: Path):
    return FileSource(str(path)).load(SourceState(path=str(path)), LoadOptions())


def _dir(base: Path, name: str, mode: int, uid: int = 0, gid: int = 0) -> Path:
    d = base / name
    d.mkdir()
    os.chown(d, uid, gid)
    os.chmod(d, mode)
    return d


def _link(target: Path | str, link: Path, uid: int = 0) -> Path:
    os.symlink(target, link)
    os.lchown(link, uid, -1)
    return link


def _nobody_plants(target: Path, link: Path) -> Path:
    """A real ``nobody`` process plants the link (it needs write access to the directory)."""
    result = as_user(lambda: os.symlink(str(target), str(link)))
    assert result is None, result
    assert os.lstat(link).st_uid == NOBODY
    return link


# Each layout builds a flag path under ``base`` and says which words the refusal must hold.

def world_writable_link(base, secret):
    return _nobody_plants(secret, _dir(base, "shared", 0o777) / "flags.json"), "writable by every user and not sticky"


def world_writable_roots_own_file(base, secret):
    # Even a file root put there: anyone may rename it away and put a link in its place.
    return write_json(_dir(base, "shared", 0o777) / "flags.json", SEED), "writable by every user and not sticky"


def foreign_group_writable(base, secret):
    shared = _dir(base, "shared", 0o775, gid=NOGROUP)
    return _link(secret, shared / "flags.json", uid=NOBODY), "writable by group nogroup (gid 65534) and not sticky"


def foreign_group_writable_roots_own_file(base, secret):
    shared = _dir(base, "shared", 0o770, gid=NOGROUP)
    return write_json(shared / "flags.json", SEED), "writable by group nogroup (gid 65534)"


def sticky_link_of_another_user(base, secret):
    return _nobody_plants(secret, _dir(base, "tmp", 0o1777) / "flags.json"), "owned by user nobody (uid 65534) in"


def link_chain_ending_in_a_planted_link(base, secret):
    planted = _nobody_plants(secret, _dir(base, "tmp", 0o1777) / "evil")
    _link(planted, _dir(base, "etc", 0o755) / "step")
    return _link("etc/step", base / "flags.json"), "owned by user nobody (uid 65534) in"


def relative_link_climbing_into_an_open_dir(base, secret):
    _nobody_plants(secret, _dir(base, "shared", 0o777) / "evil")
    conf = _dir(base, "conf", 0o755)
    return _link("../shared/evil", conf / "flags.json"), "writable by every user and not sticky"


def link_owned_by_another_user_in_a_closed_dir(base, secret):
    return _link(secret, _dir(base, "etc", 0o755) / "flags.json", uid=NOBODY), "symbolic link owned by user nobody"


def directory_owned_by_another_user(base, secret):
    theirs = _dir(base, "theirs", 0o755, uid=NOBODY, gid=NOGROUP)
    return _link(secret, theirs / "flags.json"), "directory " + str(base / "theirs") + " is owned by user nobody"


def file_owned_by_another_user(base, secret):
    path = write_json(base / "flags.json", SEED)
    os.chown(path, NOBODY, NOGROUP)
    return path, "the file is owned by user nobody"


def file_writable_by_every_user(base, secret):
    path = write_json(base / "flags.json", SEED)
    os.chmod(path, 0o666)
    return path, "the file is writable by every user"


def hard_link_in_a_sticky_dir(base, secret):
    # What another user can do where fs.protected_hardlinks is 0: link a file they cannot read.
    path = _dir(base, "tmp", 0o1777) / "flags.json"
    os.link(secret, path)
    return path, "has 2 hard links"


def acl_lets_another_user_write_the_dir(base, secret):
    shared = _dir(base, "shared", 0o755)
    _setfacl("-m", f"u:{NOBODY}:rwx", shared)  # the mode's group bits now show the ACL mask
    return _link(secret, shared / "flags.json", uid=NOBODY), "writable by user nobody (uid 65534)"


def acl_lets_another_group_write_the_file(base, secret):
    path = write_json(base / "flags.json", SEED)
    os.chmod(path, 0o644)
    _setfacl("-m", f"g:{NOGROUP}:rw", path)
    return path, "the file is writable by group nogroup (gid 65534)"


REFUSED: list[Callable] = [
    world_writable_link, world_writable_roots_own_file, foreign_group_writable,
    foreign_group_writable_roots_own_file, sticky_link_of_another_user, link_chain_ending_in_a_planted_link,
    relative_link_climbing_into_an_open_dir, link_owned_by_another_user_in_a_closed_dir,
    directory_owned_by_another_user, file_owned_by_another_user, file_writable_by_every_user,
    hard_link_in_a_sticky_dir, acl_lets_another_user_write_the_dir, acl_lets_another_group_write_the_file,
]


def _setfacl(*args) -> None:
    if shutil.which("setfacl") is None:
        pytest.skip("needs setfacl (apt-get install acl)")
    done = subprocess.run(["setfacl", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the filesystem of {args[-1]} does not take ACLs: {done.stderr.strip()}")


@pytest.mark.parametrize("layout", REFUSED, ids=lambda f: f.__name__)
def test_a_path_another_user_can_change_is_refused_with_the_reason(layout, open_dir, secret):
    path, words = layout(open_dir, secret)
    outcome = load(path)
    assert outcome.error is not None and "stolen_secret" not in outcome.state.flags, outcome
    assert outcome.error.startswith(f"{path}: ") and words in outcome.error, outcome.error
    assert not outcome.state.loaded


# Layouts that must keep loading: what root or the agent's own user set up.

def sticky_dir_roots_own_file(base, secret):
    return write_json(_dir(base, "tmp", 0o1777) / "flags.json", SEED)


def sticky_dir_roots_own_link(base, secret):
    target = write_json(base / "real.json", SEED)
    return _link(target, _dir(base, "tmp", 0o1777) / "flags.json")


def group_writable_by_roots_group(base, secret):
    return write_json(_dir(base, "etc", 0o775, gid=0) / "flags.json", SEED)


def configmap_data_links(base, secret):
    mount = _dir(base, "configmap", 0o755)
    stamp = _dir(mount, "..2026_11_23_10_00_00.1", 0o755)
    write_json(stamp / "flags.json", SEED)
    _link(stamp.name, mount / "..data")
    return _link("..data/flags.json", mount / "flags.json")


def chain_of_roots_links_with_dotdot(base, secret):
    write_json(_dir(base, "real", 0o755) / "flags.json", SEED)
    _link("../real/flags.json", _dir(base, "hop", 0o755) / "hop.json")
    return _link(f"{base}/hop/./hop.json", base / "flags.json")


def acl_lets_another_user_read_only(base, secret):
    path = write_json(base / "flags.json", SEED)
    os.chmod(path, 0o640)
    _setfacl("-m", f"u:{NOBODY}:r", path)
    return path


def dotdot_after_a_link_goes_through_the_link(base, secret):
    # "etc/link/../flags.json" is, to the kernel, the flags.json beside the link's target.
    _nobody_plants(secret, _dir(base, "shared", 0o777) / "flags.json")
    _dir(base / "shared", "sub", 0o755)
    _link(base / "shared" / "sub", _dir(base, "etc", 0o755) / "link")
    write_json(base / "etc" / "flags.json", SEED)  # what spelling alone would wrongly check
    return Path(f"{base}/etc/link/../flags.json"), "writable by every user and not sticky"


REFUSED.append(dotdot_after_a_link_goes_through_the_link)


KEPT: list[Callable] = [sticky_dir_roots_own_file, sticky_dir_roots_own_link, group_writable_by_roots_group,
                        configmap_data_links, chain_of_roots_links_with_dotdot, acl_lets_another_user_read_only]


@pytest.mark.parametrize("layout", KEPT, ids=lambda f: f.__name__)
def test_a_path_only_root_can_change_still_loads(layout, open_dir, secret):
    path = layout(open_dir, secret)
    outcome = load(path)
    assert outcome.error is None, outcome.error
    assert set(outcome.state.flags) == set(SEED["flags"])


def test_files_under_a_tests_tmp_path_still_load(tmp_path):
    outcome = load(write_json(tmp_path / "flags.json", SEED))
    assert outcome.error is None and set(outcome.state.flags) == set(SEED["flags"])


def test_a_missing_part_of_the_path_is_file_not_found(open_dir):
    assert load(open_dir / "nowhere" / "flags.json").error.endswith("file not found")


# Through a real agent: health shows the reason; the last good version stays served.

async def _ask(sock: str, message: dict) -> dict:
    async with await LineClient.connect(sock) as c:
        return await c.request(message)


async def test_the_agent_refuses_the_planted_link_and_says_why_in_health(start_agent, open_dir, secret):
    shared = _dir(open_dir, "shared", 0o777)
    link = await trio.to_thread.run_sync(_nobody_plants, secret, shared / "flags.json")
    # Without the agent, nobody cannot read the secret: the agent would be the leak.
    denied = await trio.to_thread.run_sync(lambda: as_user(lambda: open(str(secret)).read()))
    assert "PermissionError" in denied["error"]
    running = await start_agent([link])
    health = (await _ask(running.socket_path, {"op": "health"}))["result"]
    assert health["status"] == "degraded", health
    (source,) = health["sources"]
    assert "writable by every user and not sticky" in source["error"]["message"], source
    answer = await _ask(running.socket_path, {"op": "evaluate", "flag": "stolen_secret"})
    assert answer["ok"] is False and answer["error"]["code"] == "FLAG_NOT_FOUND", answer


async def test_the_agent_does_not_write_a_path_another_user_can_change(start_agent, open_dir):
    flags = write_json(_dir(open_dir, "shared", 0o777) / "flags.json", SEED)
    running = await start_agent([flags])
    answer = await _ask(running.socket_path, {"op": "set", "flag": "dark_mode", "enabled": False})
    assert answer["ok"] is False and answer["error"]["code"] == "READ_ONLY", answer
    assert "another user could change" in answer["error"]["message"], answer
    assert flags.read_text() == write_json(open_dir / "same.json", SEED).read_text()


async def test_a_directory_opened_up_later_keeps_the_last_good_flags(start_agent, open_dir):
    conf = _dir(open_dir, "conf", 0o755)
    flags = write_json(conf / "flags.json", SEED)
    running = await start_agent([flags])
    sock = running.socket_path
    assert (await _ask(sock, {"op": "evaluate", "flag": "dark_mode"}))["result"]["value"] is True
    os.chmod(conf, 0o777)
    doc = dict(SEED, flags={**SEED["flags"], "dark_mode": {**SEED["flags"]["dark_mode"], "enabled": False}})
    write_json(flags, doc)
    answer = await _ask(sock, {"op": "reload"})
    assert answer["ok"] is False and "writable by every user" in answer["error"]["message"], answer
    health = (await _ask(sock, {"op": "health"}))["result"]
    assert health["status"] == "degraded" and "writable by every user" in health["sources"][0]["error"]["message"]
    assert (await _ask(sock, {"op": "evaluate", "flag": "dark_mode"}))["result"]["value"] is True
    os.chmod(conf, 0o755)
    assert (await _ask(sock, {"op": "reload"}))["ok"] is True
    assert (await _ask(sock, {"op": "evaluate", "flag": "dark_mode"}))["result"]["value"] is False
    assert (await _ask(sock, {"op": "health"}))["result"]["status"] == "ok"
