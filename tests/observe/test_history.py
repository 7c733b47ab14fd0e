"""The change history: who changed which flag, when, before and after; durable across restarts."""

from __future__ import annotations

import json
import os
import pwd
import signal

import orjson
import pytest
import trio

from agent.store.history import History
from tests.helpers import LineClient, write_json
from tests.process import AgentProcess, flagsock


class FakeFlag:
    def __init__(self, definition: dict, source: str = "flags.json") -> None:
        self.definition = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
        self.source = source


def flags(**definitions: dict) -> dict[str, FakeFlag]:
    return {key: FakeFlag(d) for key, d in definitions.items()}


async def test_history_file_is_read_back_newest_first(tmp_path):
    path = str(tmp_path / "history.jsonl")
    history = History(path)
    history.load()
    old, new = flags(a={"enabled": True}), flags(a={"enabled": False}, b={"enabled": True})
    history.record(2, "2026-01-01T00:00:00.000Z", {"uid": 1, "pid": 2, "user": "u"},
                   {"a": "updated", "b": "added"}, old, new)
    history.record(3, "2026-01-01T00:00:01.000Z", {"source": "flags.json"}, {"b": "removed"}, new, flags(a={"enabled": False}))
    assert len(history.changes()) == 2
    await history.flush()
    again = History(path)
    again.load()
    changes = again.changes()
    assert [c["revision"] for c in changes] == [3, 2]
    assert changes[1]["flags"] == {
        "a": {"change": "updated", "before": {"enabled": True}, "after": {"enabled": False}},
        "b": {"change": "added", "before": None, "after": {"enabled": True}},
    }
    assert changes[1]["by"] == {"uid": 1, "pid": 2, "user": "u"}
    assert [c["revision"] for c in again.changes("b")] == [3, 2]
    assert again.changes("b")[1]["flags"] == {"b": {"change": "added", "before": None, "after": {"enabled": True}}}
    assert again.changes(limit=1)[0]["revision"] == 3
    assert again.changes("nope") == []


async def test_the_bound_drops_the_oldest_changes_by_rewriting_the_file(tmp_path):
    path = tmp_path / "history.jsonl"
    history = History(str(path), max_bytes=4000)
    history.load()
    for revision in range(2, 60):
        history.record(revision, "2026-01-01T00:00:00.000Z", {"source": "f"}, {"x": "updated"},
                       flags(x={"n": revision - 1, "pad": "p" * 100}), flags(x={"n": revision, "pad": "p" * 100}))
        await history.flush()
        assert path.stat().st_size <= 4000
    assert not list(tmp_path.glob(".*tmp"))
    reread = History(str(path), max_bytes=4000)
    reread.load()
    revisions = [c["revision"] for c in reread.changes(limit=1000)]
    assert revisions[0] == 59 and revisions == list(range(59, 59 - len(revisions), -1))
    assert 8 <= len(revisions) <= 14  # lines of about 300 bytes; the bound is 4000
    in_memory = [c["revision"] for c in history.changes(limit=1000)]
    assert in_memory[: len(revisions)] == revisions and history.describe()["bytes"] <= 4000


async def test_a_partial_last_line_from_a_crash_is_cut_off(tmp_path):
    path = tmp_path / "history.jsonl"
    history = History(str(path))
    history.load()
    history.record(2, "t", {"source": "f"}, {"x": "added"}, {}, flags(x={"a": 1}))
    await history.flush()
    with open(path, "ab") as f:
        f.write(b'{"revision": 3, "at": "t", "by": {"sour')
    again = History(str(path))
    again.load()
    assert [c["revision"] for c in again.changes()] == [2]
    again.record(4, "t", {"source": "f"}, {"x": "removed"}, flags(x={"a": 1}), {})
    await again.flush()
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["revision"] for line in lines] == [2, 4]


async def test_a_change_made_while_stopped_is_recorded_at_start(tmp_path):
    path = str(tmp_path / "history.jsonl")
    history = History(path)
    history.load()
    history.record(2, "t", {"source": "f"}, {"x": "updated"}, flags(x={"a": 1}), flags(x={"a": 2}, y={"b": 1}))
    await history.flush()
    restarted = History(path)
    restarted.load()
    # First load after the restart: x was edited while stopped; y and z the history never knew.
    restarted.record(1, "t2", {"source": "flags.json"}, {"x": "added", "y": "added", "z": "added"},
                     {}, flags(x={"a": 3}, y={"b": 1}, z={"c": 1}), first=True)
    newest = restarted.changes()[0]
    assert newest["by"] == {"source": "flags.json", "while_stopped": True}
    assert newest["flags"] == {"x": {"change": "updated", "before": {"a": 2}, "after": {"a": 3}}}
    unchanged = History(path)
    unchanged.load()
    unchanged.record(1, "t3", {"source": "f"}, {"x": "added"}, {}, flags(x={"a": 3}), first=True)
    assert unchanged.changes()[0]["revision"] == 1  # the one above, nothing new
    assert len(unchanged.changes(limit=10)) == 2


def seed(path):
    return write_json(path, {"flags": {
        "banner": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
    }})


async def wait_for_revision(client: LineClient, revision: int) -> None:
    while True:
        event = await client.receive(timeout=10)
        if event.get("event") == "changed" and event["revision"] >= revision:
            return


async def test_history_names_who_changed_what_and_survives_a_restart(serving, tmp_path):
    flag_file = seed(tmp_path / "flags.json")
    state = tmp_path / "state"
    async with serving([flag_file], state_dir=str(state)) as running:
        async with await LineClient.connect(running.socket_path) as client:
            health = await client.result({"op": "health"})
            assert health["history"]["durable"] is True
            assert health["history"]["path"] == str(state / "history.jsonl")
            assert (await client.result({"op": "history"})) == {"changes": []}  # the start is no change
            await client.result({"op": "set", "flag": "banner", "definition": {
                "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}})
        async with await LineClient.connect(running.socket_path) as watcher:
            await watcher.result({"op": "subscribe"})
            doc = json.loads(flag_file.read_text())
            doc["flags"]["promo"] = {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a"}
            write_json(flag_file, doc)
            await wait_for_revision(watcher, 3)
        async with await LineClient.connect(running.socket_path) as client:
            changes = (await client.result({"op": "history"}))["changes"]
    assert [c["revision"] for c in changes] == [3, 2]
    edit, write = changes
    assert write["by"] == {"uid": os.getuid(), "pid": os.getpid(), "user": pwd.getpwuid(os.getuid()).pw_name}
    assert write["flags"]["banner"]["change"] == "updated"
    assert write["flags"]["banner"]["before"]["defaultVariant"] == "off"
    assert write["flags"]["banner"]["after"]["defaultVariant"] == "on"
    assert edit["by"] == {"source": str(flag_file)}
    assert edit["flags"] == {"promo": {"change": "added", "before": None,
                                       "after": {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a"}}}
    assert write["at"] <= edit["at"]

    doc = json.loads(flag_file.read_text())
    del doc["flags"]["promo"]
    write_json(flag_file, doc)  # while the agent is stopped
    async with serving([flag_file], state_dir=str(state)) as running:
        async with await LineClient.connect(running.socket_path) as client:
            after = (await client.result({"op": "history", "limit": 5}))["changes"]
            only_banner = (await client.result({"op": "history", "flag": "banner"}))["changes"]
            bad = await client.request({"op": "history", "limit": 0})
    assert after[1:] == changes
    assert after[0]["by"] == {"source": str(flag_file), "while_stopped": True}
    assert after[0]["flags"]["promo"]["change"] == "removed"
    assert [c["revision"] for c in only_banner] == [2] and list(only_banner[0]["flags"]) == ["banner"]
    assert bad["error"]["code"] == "BAD_REQUEST" and "limit" in bad["error"]["message"]


async def test_without_a_state_dir_the_history_is_in_memory_and_health_says_so(serving, tmp_path, monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    flag_file = seed(tmp_path / "flags.json")
    async with serving([flag_file]) as running:
        async with await LineClient.connect(running.socket_path) as client:
            health = await client.result({"op": "health"})
            assert health["history"]["durable"] is False and health["history"]["path"] is None
            await client.result({"op": "set", "flag": "banner", "enabled": True})
            changes = (await client.result({"op": "history"}))["changes"]
    assert changes[0]["flags"]["banner"]["after"]["defaultVariant"] == "on"
    assert changes[0]["flags"]["banner"]["before"]["defaultVariant"] == "off"


async def test_state_directory_comes_from_systemd(serving, tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'sd'}:{tmp_path / 'other'}")
    async with serving([seed(tmp_path / "flags.json")]) as running:
        async with await LineClient.connect(running.socket_path) as client:
            health = await client.result({"op": "health"})
    assert health["history"]["path"] == str(tmp_path / "sd" / "history.jsonl")


async def test_an_unusable_state_dir_stops_the_start_with_the_setting_named(tmp_path, sock_dir):
    from agent.config import ServeConfig
    from agent.daemon import run_agent
    from agent.host.errors import StartupError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = ServeConfig(flags=(str(seed(tmp_path / "flags.json")),), socket=str(sock_dir / "a.sock"),
                         state_dir=str(blocker / "state"))
    with pytest.raises(StartupError, match="--state-dir .*/file/state: cannot keep the change history there"):
        await run_agent(config, handle_signals=False, notifier=None, inherited=[])
    assert not (sock_dir / "a.sock").exists()  # refused before anything was bound


def test_cli_history_shows_who_and_what_changed_after_a_kill(tmp_path, sock_dir):
    flag_file = seed(tmp_path / "flags.json")
    sock = str(sock_dir / "h.sock")
    args = ["--flags", str(flag_file), "--socket", sock, "--state-dir", str(tmp_path / "state")]
    with AgentProcess(args) as agent:
        assert flagsock("set", "banner", "--on", "--socket", sock).returncode == 0
        agent.stop(signal.SIGKILL)  # an acknowledged set is in the history file already
    with AgentProcess(args):
        out = flagsock("history", "--socket", sock)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        user = pwd.getpwuid(os.getuid()).pw_name
        assert lines[0].startswith("revision 2  ")
        assert f"by {user} (uid {os.getuid()}, pid " in lines[0]
        assert lines[1:] == ["  banner updated", '    defaultVariant: "off" -> "on"']
        assert flagsock("history", "nothing-here", "--socket", sock).stdout == "no changes of nothing-here recorded\n"
        as_json = json.loads(flagsock("history", "banner", "--limit", "1", "--json", "--socket", sock).stdout)
        assert as_json["changes"][0]["flags"]["banner"]["after"]["defaultVariant"] == "on"


async def test_a_set_is_answered_once_its_history_entry_is_on_disk(serving, tmp_path, monkeypatch):
    async def no_background_writes(self, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()  # only the writer's own flush writes the file now

    monkeypatch.setattr(History, "run", no_background_writes)
    state = tmp_path / "state"
    async with serving([seed(tmp_path / "flags.json")], state_dir=str(state)) as running:
        async with await LineClient.connect(running.socket_path) as client:
            assert (await client.result({"op": "set", "flag": "banner", "enabled": True}))["revision"] == 2
            lines = (state / "history.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["flags"]["banner"]["change"] for line in lines] == ["updated"]


def test_a_write_committed_elsewhere_is_recorded_as_made_by_its_peer():
    history = History()
    peer = {"uid": 7, "pid": 8, "user": "ann"}
    token = history.expect(frozenset({"x"}), peer)
    history.record(5, "t", {"source": "etcd://e/p"}, {"y": "added"}, {}, flags(y={"a": 1}))
    history.record(6, "t", {"source": "etcd://e/p"}, {"x": "added"}, {}, flags(x={"a": 1}))
    history.record(7, "t", {"source": "etcd://e/p"}, {"x": "updated"}, flags(x={"a": 1}), flags(x={"a": 2}))
    assert [c["by"] for c in history.changes()] == [{"source": "etcd://e/p"}, peer, {"source": "etcd://e/p"}]
    withdrawn = history.expect(frozenset({"x"}), peer)
    history.withdraw(withdrawn)  # the commit failed: the next change of x is someone else's
    history.withdraw(token)  # already used: nothing to do
    history.record(8, "t", {"source": "etcd://e/p"}, {"x": "removed"}, flags(x={"a": 2}), {})
    assert history.changes()[0]["by"] == {"source": "etcd://e/p"}
