"""``--allow-write-group`` counts the groups the connecting process really holds, as the kernel says.

Issue 13, point 3, third finding: the group was resolved from /etc/group once at start, so a
process that had dropped the group could still write, a member removed later could still write,
and a process holding the group only as a supplementary group (not listed in /etc/group) could
not. Here real ``nobody`` processes, each with a different set of groups, send real ``set``
requests to a real agent; before the fix the two "dropped" cases wrote and the "supplementary"
ones were refused.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import trio

from agent.store.peer import peer_of
from tests.helpers import SEED, write_json
from tests.security.users import NOBODY, NOGROUP, as_user, need_root, remove_member, scratch_group

pytestmark = pytest.mark.usefixtures("_root_only")


@pytest.fixture
def _root_only():
    need_root()


@pytest.fixture
def listed():
    """A group whose /etc/group entry lists nobody as a member."""
    with scratch_group(members=["nobody"]) as group:
        yield group


@pytest.fixture
def unlisted():
    """A group with no members in /etc/group: only setgroups() can give it to a process."""
    with scratch_group() as group:
        yield group


def _set_request(sock: str, flag: str) -> dict:
    """A ``set`` over the socket, from a blocking stdlib client (it runs in the forked child)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(json.dumps({"op": "set", "flag": flag, "enabled": True}).encode() + b"\n")
        return json.loads(s.makefile("rb").readline())


async def _set_as_nobody(sock: str, flag: str, *, gid: int = NOGROUP, groups: list[int]) -> dict:
    answer = await trio.to_thread.run_sync(lambda: as_user(lambda: _set_request(sock, flag), uid=NOBODY, gid=gid,
                                                         groups=groups))
    assert "ok" in answer, answer  # the child itself did not fail
    return answer


async def _agent(start_agent, tmp_path: Path, sock_dir: Path, group: str):
    os.chmod(sock_dir, 0o755)  # nobody may reach the socket; who may write is the agent's call
    flags = write_json(tmp_path / "flags.json", SEED)
    running = await start_agent([flags], allow_write_group=(group,), socket_mode=0o666)
    return running.socket_path, flags


def _allowed(answer: dict) -> bool:
    if answer["ok"]:
        return True
    assert answer["error"]["code"] == "PERMISSION_DENIED", answer
    return False


# (what the nobody process holds, whether it may write); "G" is the allowed group's gid.
UNLISTED_CASES = {
    "supplementary": (dict(groups=["G"]), True),
    "primary": (dict(gid="G", groups=[]), True),
    "supplementary_among_200_others": (dict(groups=[*range(70_000, 70_200), "G"]), True),
    "supplementary_among_1000_others": (dict(groups=[*range(70_000, 71_000), "G"]), True),
    "not_held": (dict(groups=[]), False),
    "other_groups_only": (dict(groups=[*range(70_000, 70_010)]), False),
}


def _resolve(holds: dict, gid: int) -> dict:
    out = dict(holds)
    out["groups"] = [gid if g == "G" else g for g in holds["groups"]]
    if out.get("gid") == "G":
        out["gid"] = gid
    return out


@pytest.mark.parametrize("case", list(UNLISTED_CASES))
async def test_a_group_held_but_not_listed_in_etc_group_decides(case, unlisted, start_agent, tmp_path, sock_dir):
    holds, may = UNLISTED_CASES[case]
    sock, flags = await _agent(start_agent, tmp_path, sock_dir, unlisted.gr_name)
    answer = await _set_as_nobody(sock, f"by_{case}", **_resolve(holds, unlisted.gr_gid))
    assert _allowed(answer) is may, answer
    assert (f"by_{case}" in json.loads(flags.read_text())["flags"]) is may


async def test_a_listed_member_that_dropped_the_group_may_not_write(listed, start_agent, tmp_path, sock_dir):
    sock, flags = await _agent(start_agent, tmp_path, sock_dir, listed.gr_name)
    assert "nobody" in listed.gr_mem
    assert not _allowed(await _set_as_nobody(sock, "dropped", groups=[]))
    assert _allowed(await _set_as_nobody(sock, "held", groups=[listed.gr_gid]))
    assert set(json.loads(flags.read_text())["flags"]) == {*SEED["flags"], "held"}


async def test_a_member_removed_after_start_counts_as_the_process_holds_it(listed, start_agent, tmp_path, sock_dir):
    sock, _ = await _agent(start_agent, tmp_path, sock_dir, listed.gr_name)
    assert _allowed(await _set_as_nobody(sock, "before", groups=[listed.gr_gid]))
    remove_member(listed.gr_name, "nobody")
    # A new login of nobody would no longer get the group: such a process may not write.
    assert not _allowed(await _set_as_nobody(sock, "after_login", groups=[]))
    # One that still holds it (it started before the removal) still may: the kernel's view counts.
    assert _allowed(await _set_as_nobody(sock, "still_holding", groups=[listed.gr_gid]))


@pytest.mark.parametrize("count", [0, 1, 255, 256, 300, 2000, 65535])
def test_peer_groups_are_the_connecting_process_s_own(sock_dir, count):
    """SO_PEERGROUPS as read by the agent: Python reads at most 256 groups; more go through libc."""
    os.chmod(sock_dir, 0o755)
    path = str(sock_dir / "peer.sock")
    groups = [*range(70_000, 70_000 + count), NOGROUP]
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        os.chmod(path, 0o666)
        server.listen(1)
        answer = as_user(lambda: socket.socket(socket.AF_UNIX).connect(path), groups=groups)
        assert answer is None, answer
        conn, _ = server.accept()
        with conn:
            peer = peer_of(conn)
    assert (peer.uid, peer.gid, peer.groups) == (NOBODY, NOGROUP, frozenset(groups))
