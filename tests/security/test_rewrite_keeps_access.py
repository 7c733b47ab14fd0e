"""A ``set`` or ``delete`` rewrites the flag file without changing who may read or write it.

Issue 13, point 3, second finding: the rewrite (a temporary file renamed over the original) dropped
the file's ACL and extended attributes, which widened who could read it. Each layout below is
rewritten through a real agent and then checked as the real user ``nobody``; before the fix, every
one of them lost something (the ACL, the attributes, the set-id bits) or gained an ACL from the
directory's default.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import trio

from agent.writes.durable import TEMP_SUFFIX, replace_durably, why_not_writable
from tests.helpers import SEED, LineClient, write_json
from tests.security.users import NOBODY, NOGROUP, as_user, need_root

pytestmark = pytest.mark.usefixtures("_root_only")


@pytest.fixture
def _root_only():
    need_root()


def _setfacl(*args) -> None:
    if shutil.which("setfacl") is None:
        pytest.skip("needs setfacl (apt-get install acl)")
    done = subprocess.run(["setfacl", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the filesystem of {args[-1]} does not take ACLs: {done.stderr.strip()}")


def _need_user_xattrs(directory: Path) -> None:
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip(f"the filesystem of {directory} does not support user extended attributes "
                        "(mount it with user_xattr, or run the tests on ext4/tmpfs)")
        raise
    finally:
        probe.unlink()


def _access(path: Path) -> tuple:
    """Everything that decides who may read or write ``path``: mode, owner, group and every xattr."""
    st = os.lstat(path)
    attrs = {name: os.getxattr(path, name) for name in os.listxattr(path)}
    return st.st_mode, st.st_uid, st.st_gid, attrs


def _nobody_reads(path: Path) -> bool:
    answer = as_user(lambda: len(open(str(path), "rb").read()))
    if isinstance(answer, dict):
        assert "PermissionError" in answer["error"], answer
        return False
    return True


# Each layout prepares the flag file at ``path`` (inside ``conf``, a root-owned 0755 directory).

def acl_denies_one_user(conf, path):
    os.chmod(path, 0o644)
    _setfacl("-m", f"u:{NOBODY}:---", path)  # everyone may read it, except nobody


def acl_mask_narrows_the_owning_group(conf, path):
    os.chown(path, 0, NOGROUP)
    os.chmod(path, 0o600)
    _setfacl("-m", "u:daemon:r,g::---", path)  # the mode shows 0640, but group nogroup may not read


def user_attributes(conf, path):
    _need_user_xattrs(conf)
    os.setxattr(path, "user.deployed_by", b"pipeline 42")
    os.setxattr(path, "user.binary", bytes(range(256)))


def set_id_bits_and_group(conf, path):
    os.chown(path, 0, NOGROUP)
    os.chmod(path, 0o6750)  # a chown after the chmod clears these


def directory_default_acl(conf, path):
    os.chmod(path, 0o640)
    _setfacl("-d", "-m", f"u:{NOBODY}:rw", conf)  # a new file here would let nobody read it


LAYOUTS = [acl_denies_one_user, acl_mask_narrows_the_owning_group, user_attributes, set_id_bits_and_group,
           directory_default_acl]


@pytest.mark.parametrize("op", ["set", "delete"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
async def test_a_rewrite_keeps_mode_owner_acl_and_attributes(layout, op, open_dir, start_agent):
    conf = open_dir / "conf"
    conf.mkdir(mode=0o755)
    path = write_json(conf / "flags.json", SEED)
    layout(conf, path)
    before, content = _access(path), path.read_bytes()
    readable = await trio.to_thread.run_sync(_nobody_reads, path)
    running = await start_agent([path])
    request = ({"op": "set", "flag": "dark_mode", "enabled": False} if op == "set"
               else {"op": "delete", "flag": "dark_mode"})
    async with await LineClient.connect(running.socket_path) as c:
        answer = await c.request(request)
    assert answer["ok"] is True, answer
    assert path.read_bytes() != content
    assert await trio.to_thread.run_sync(_nobody_reads, path) is readable, "the rewrite changed whether nobody may read"
    assert _access(path) == before
    assert not [n for n in os.listdir(conf) if n.endswith(TEMP_SUFFIX)]


def _capability_blob() -> bytes:
    """``cap_net_bind_service=p`` as the kernel stores it (VFS_CAP_REVISION_2)."""
    return struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0)


def test_an_attribute_the_agent_cannot_copy_refuses_the_rewrite_and_changes_nothing(open_dir):
    """The agent runs as nobody; root gave its file a capability, which only root may set."""
    mine = open_dir / "mine"
    mine.mkdir()
    os.chown(mine, NOBODY, NOGROUP)
    path = write_json(mine / "flags.json", SEED)
    os.chown(path, NOBODY, NOGROUP)
    try:
        os.setxattr(path, "security.capability", _capability_blob())
    except OSError as exc:
        pytest.skip(f"cannot set a file capability here ({exc.strerror}); needs CAP_SETFCAP on ext4/tmpfs")
    before, content = _access(path), path.read_bytes()
    assert as_user(lambda: why_not_writable(str(path))) is None
    answer = as_user(lambda: replace_durably(str(path), b'{"flags": {}}'))
    assert "UnsafeReplace" in answer["error"] and "security.capability" in answer["error"], answer
    assert path.read_bytes() == content and _access(path) == before
    assert os.listdir(mine) == ["flags.json"]


def test_an_owner_the_agent_cannot_keep_refuses_the_rewrite(open_dir):
    """The agent runs as nobody and may write root's file through its group: the replacement would be nobody's."""
    shared = open_dir / "shared"
    shared.mkdir()
    os.chown(shared, 0, NOGROUP)
    os.chmod(shared, 0o775)
    path = write_json(shared / "flags.json", SEED)
    os.chown(path, 0, NOGROUP)
    os.chmod(path, 0o664)
    before, content = _access(path), path.read_bytes()
    reason = as_user(lambda: why_not_writable(str(path)))
    assert "owned by uid 0" in reason and "would make it the agent's" in reason, reason
    answer = as_user(lambda: replace_durably(str(path), b'{"flags": {}}'))
    assert "UnsafeReplace" in answer["error"] and "cannot give the file that replaces it" in answer["error"], answer
    assert path.read_bytes() == content and _access(path) == before
    assert os.listdir(shared) == ["flags.json"]


async def test_a_refused_rewrite_answers_read_only_with_the_reason(open_dir, start_agent, monkeypatch):
    """Any attribute that cannot be copied: READ_ONLY naming it, the file and what is served unchanged."""
    _need_user_xattrs(open_dir)
    path = write_json(open_dir / "flags.json", SEED)
    os.setxattr(path, "user.keep", b"1")
    content = path.read_bytes()
    real_setxattr = os.setxattr

    def refusing_setxattr(target, name, *args, **kwargs):
        if name == "user.keep":  # as a filesystem out of xattr space would (ENOSPC)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_setxattr(target, name, *args, **kwargs)

    running = await start_agent([path])
    monkeypatch.setattr(os, "setxattr", refusing_setxattr)
    async with await LineClient.connect(running.socket_path) as c:
        answer = await c.request({"op": "set", "flag": "dark_mode", "enabled": False})
        assert answer["ok"] is False and answer["error"]["code"] == "READ_ONLY", answer
        assert "user.keep" in answer["error"]["message"] and "nothing was changed" in answer["error"]["message"]
        assert (await c.request({"op": "evaluate", "flag": "dark_mode"}))["result"]["value"] is True
    assert path.read_bytes() == content and os.getxattr(path, "user.keep") == b"1"
    assert sorted(os.listdir(open_dir)) == ["flags.json"]
