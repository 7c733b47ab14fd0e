"""Hot reload through the real watcher: every way a flag file changes on a host.

Each test subscribes and waits for the agent's own event (``changed`` or ``reload_failed``)
with a deadline, so nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import trio

from tests.helpers import LineClient, write_json

SERVED_WITHIN = 1.0  # seconds: the bound for an edit to be served


def doc(**values: bool) -> dict:
    return {"flags": {k: {"enabled": v} for k, v in values.items()}}


async def subscribe(path) -> LineClient:
    c = await LineClient.connect(path)
    assert (await c.request({"op": "subscribe"}))["ok"]
    return c


async def next_event(sub: LineClient, kind: str, timeout: float = SERVED_WITHIN) -> dict:
    with trio.fail_after(timeout):
        while True:
            msg = await sub.receive(timeout)
            assert msg is not None, "subscriber connection closed"
            if msg.get("event") == kind:
                return msg


async def value(path, flag: str):
    async with await LineClient.connect(path) as c:
        answer = await c.request({"op": "evaluate", "flag": flag})
        return answer["result"]["value"] if answer["ok"] else answer["error"]["code"]


async def health(path) -> dict:
    async with await LineClient.connect(path) as c:
        return await c.result({"op": "health"})


@pytest.fixture
async def served(start_agent, tmp_path):
    flags = write_json(tmp_path / "flags.json", doc(a=True))
    running = await start_agent([flags])
    sub = await subscribe(running.socket_path)
    yield flags, running, sub
    await sub.aclose()


async def test_atomic_replace_is_served_within_a_second(served):
    flags, running, sub = served
    write_json(flags, doc(a=False))
    event = await next_event(sub, "changed")
    assert event["flags"] == {"a": "updated"}
    assert await value(running.socket_path, "a") is False


async def test_in_place_rewrite_is_served(served):
    flags, running, sub = served
    with open(flags, "w") as f:
        f.write(json.dumps(doc(a=False, b=True)))
    event = await next_event(sub, "changed")
    assert event["flags"] == {"a": "updated", "b": "added"}


async def test_half_written_file_is_never_served_and_the_rest_recovers(served):
    flags, running, sub = served
    text = json.dumps(doc(a=False, b=True), indent=2)
    with open(flags, "w") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        failed = await next_event(sub, "reload_failed")
        assert "flags.json" in failed["message"]
        assert await value(running.socket_path, "a") is True  # the last good one
        h = await health(running.socket_path)
        assert h["status"] == "degraded" and h["last_error"]["source"] == str(flags)
        f.write(text[len(text) // 2 :])
    await next_event(sub, "changed")
    assert await value(running.socket_path, "b") is True
    assert (await health(running.socket_path))["last_error"] is None


async def test_a_broken_edit_keeps_the_last_good_flags_and_says_why(served):
    flags, running, sub = served
    flags.write_text('{"flags": {"a": {"enabled": "yes"}}}')
    failed = await next_event(sub, "reload_failed")
    assert "$.flags.a.enabled" in failed["message"]
    assert await value(running.socket_path, "a") is True
    h = await health(running.socket_path)
    assert h["status"] == "degraded"
    assert "$.flags.a.enabled" in h["last_error"]["message"] and h["last_error"]["at"]
    write_json(flags, doc(a=False))
    await next_event(sub, "changed")
    h = await health(running.socket_path)
    assert h["status"] == "ok" and h["last_error"] is None


async def test_reverting_to_the_served_content_clears_the_error(served):
    flags, running, sub = served
    good = flags.read_text()
    flags.write_text("{")
    await next_event(sub, "reload_failed")
    revision = (await health(running.socket_path))["revision"]
    flags.write_text(good)
    async with await LineClient.connect(running.socket_path) as c:
        with trio.fail_after(SERVED_WITHIN):
            while (h := await c.result({"op": "health"}))["last_error"] is not None:
                await trio.sleep(0.02)
    assert h["revision"] == revision and h["status"] == "ok"


async def test_an_empty_file_is_refused(served):
    flags, running, sub = served
    flags.write_text("")
    failed = await next_event(sub, "reload_failed")
    assert "empty" in failed["message"]
    assert await value(running.socket_path, "a") is True


async def test_vim_save_pattern(served):
    flags, running, sub = served
    directory = flags.parent
    (directory / "4913").write_text("")  # vim's probe file
    os.unlink(directory / "4913")
    os.rename(flags, directory / "flags.json~")
    flags.write_text(json.dumps(doc(a=False)))
    os.unlink(directory / "flags.json~")
    await next_event(sub, "changed")
    assert await value(running.socket_path, "a") is False


async def test_emacs_save_pattern(served):
    flags, running, sub = served
    directory = flags.parent
    os.symlink("user@host.1234:1", directory / ".#flags.json")  # emacs lock
    shutil.copy2(flags, directory / "flags.json~")
    with open(flags, "w") as f:  # emacs writes in place when the backup is a copy
        f.write(json.dumps(doc(a=False)))
    os.unlink(directory / ".#flags.json")
    await next_event(sub, "changed")
    assert await value(running.socket_path, "a") is False


@pytest.mark.skipif(shutil.which("sed") is None, reason="sed is not installed")
async def test_sed_in_place(served):
    flags, running, sub = served
    flags.write_text(json.dumps(doc(a=True), indent=2))
    # that write may or may not be seen as a change (same flags): only the sed edit matters
    await trio.to_thread.run_sync(lambda: subprocess.run(["sed", "-i", "s/true/false/", str(flags)], check=True))
    with trio.fail_after(SERVED_WITHIN * 2):
        while await value(running.socket_path, "a") is not False:
            await next_event(sub, "changed", timeout=SERVED_WITHIN * 2)


async def test_delete_then_recreate(served):
    flags, running, sub = served
    os.unlink(flags)
    failed = await next_event(sub, "reload_failed")
    assert "not found" in failed["message"]
    assert await value(running.socket_path, "a") is True
    write_json(flags, doc(a=False))
    await next_event(sub, "changed")
    assert await value(running.socket_path, "a") is False


async def test_parent_directory_removed_and_recreated(start_agent, tmp_path):
    directory = tmp_path / "conf"
    directory.mkdir()
    flags = write_json(directory / "flags.json", doc(a=True))
    running = await start_agent([flags])
    sub = await subscribe(running.socket_path)
    shutil.rmtree(directory)
    await next_event(sub, "reload_failed", timeout=5)
    assert await value(running.socket_path, "a") is True
    directory.mkdir()
    write_json(flags, doc(a=False))
    await next_event(sub, "changed", timeout=5)  # the stat poll notices the new directory
    assert await value(running.socket_path, "a") is False
    write_json(flags, doc(a=True))  # and keeps noticing, whether by the restarted watch or the poll
    await next_event(sub, "changed", timeout=5)
    await sub.aclose()


async def test_kubernetes_configmap_symlink_swap(start_agent, tmp_path):
    mount = tmp_path / "configmap"
    mount.mkdir()

    def publish(version: str, content: dict) -> None:
        stamp = mount / f"..{version}"
        stamp.mkdir()
        (stamp / "flags.json").write_text(json.dumps(content))
        os.symlink(stamp.name, mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")

    publish("2026_11_23_10_00_00.1", doc(a=True))
    os.symlink("..data/flags.json", mount / "flags.json")
    running = await start_agent([mount / "flags.json"])
    assert await value(running.socket_path, "a") is True
    sub = await subscribe(running.socket_path)
    publish("2026_11_23_10_05_00.2", doc(a=False))
    shutil.rmtree(mount / "..2026_11_23_10_00_00.1")
    await next_event(sub, "changed")
    assert await value(running.socket_path, "a") is False
    await sub.aclose()


async def test_missing_file_at_start_serves_nothing_then_picks_it_up(start_agent, tmp_path):
    flags = tmp_path / "later.json"
    running = await start_agent([flags])
    h = await health(running.socket_path)
    assert h["status"] == "degraded" and h["flag_count"] == 0 and "not found" in h["last_error"]["message"]
    assert await value(running.socket_path, "a") == "FLAG_NOT_FOUND"
    sub = await subscribe(running.socket_path)
    write_json(flags, doc(a=True))
    event = await next_event(sub, "changed")
    assert event["flags"] == {"a": "added"}
    assert (await health(running.socket_path))["status"] == "ok"
    await sub.aclose()


async def test_invalid_file_at_start_does_not_stop_the_agent(start_agent, tmp_path):
    flags = tmp_path / "flags.json"
    flags.write_text('{"flags": {"a": {"enabled": true, "rollout_percentage": 150}}}')
    running = await start_agent([flags])
    h = await health(running.socket_path)
    assert h["status"] == "degraded"
    assert "$.flags.a.rollout_percentage" in h["last_error"]["message"]


async def test_several_sources_merge_in_order_later_winning(start_agent, tmp_path):
    first = write_json(tmp_path / "a.json", doc(shared=True, only_first=True))
    second = write_json(tmp_path / "b.json", doc(shared=False, only_second=True))
    running = await start_agent([first, second])
    assert await value(running.socket_path, "shared") is False
    assert await value(running.socket_path, "only_first") is True
    assert await value(running.socket_path, "only_second") is True
    sub = await subscribe(running.socket_path)
    second.write_text("{broken")  # one bad source: the others keep serving, its last good too
    await next_event(sub, "reload_failed")
    assert await value(running.socket_path, "shared") is False
    write_json(first, doc(shared=True, only_first=False))
    event = await next_event(sub, "changed")
    assert event["flags"] == {"only_first": "updated"}
    assert await value(running.socket_path, "only_first") is False
    await sub.aclose()


async def test_content_unchanged_makes_no_new_revision(served):
    flags, running, sub = served
    revision = (await health(running.socket_path))["revision"]
    async with await LineClient.connect(running.socket_path) as c:
        result = await c.result({"op": "reload"})
    assert result == {"revision": revision, "changed": False}
