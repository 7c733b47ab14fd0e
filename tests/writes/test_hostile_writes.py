"""A write keeps the same limits as a read, and edits only documents the loader would serve.

Issue 13 point 1: ``set`` with a 252-deep definition answered INTERNAL; issue 12: the writer and
the loader disagreed about whether ``{"$evaluators": {}, "flags": {...simple...}}`` is simple.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import LineClient, write_json
from tests.writes.conftest import ok, refused


def deep(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


async def send_text(sock: str, text: str) -> dict:
    """A request as raw text: a deep one need not go through this process's JSON encoder."""
    async with await LineClient.connect(sock) as c:
        await c.send(text.encode() + b"\n")
        return await c.receive()


@pytest.mark.parametrize("depth", [59, 60, 252, 500, 1010])
@pytest.mark.parametrize("where", ["variant", "targeting"])
async def test_a_definition_deeper_than_a_flag_file_may_be_is_refused_naming_where(
        start_agent, flagd_file, depth, where):
    running = await start_agent([flagd_file])
    before = flagd_file.read_bytes()
    if where == "variant":
        definition = '{"state": "ENABLED", "variants": {"on": {"v": %s}, "off": {}}, "defaultVariant": "on"}' % deep(depth)
        path = "definition.variants.on.v"
    else:
        definition = ('{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", '
                      '"targeting": {"in": [1, %s]}}' % deep(depth))
        path = "definition.targeting.in[1]"
    reply = await send_text(running.socket_path, '{"op": "set", "flag": "deep", "definition": %s}' % definition)
    if depth + 5 <= 64:  # the levels the flag file would then have ($ > flags > deep > ...)
        assert reply["ok"], reply
        return
    if reply["ok"] is False and reply["error"]["code"] == "BAD_REQUEST":
        assert depth > 1000  # past what the wire decoder reads at all
        return
    assert reply["error"]["code"] == "INVALID_FLAG", reply
    message = reply["error"]["message"]
    assert message.startswith(path) and "max-depth" in message
    assert flagd_file.read_bytes() == before


@pytest.mark.parametrize(("text", "words"), [
    ('{"flags": {"a": {"enabled": true}, "a": {"enabled": false}}}', "duplicate flag key 'a'"),
    ('{"flags": {"a": {"enabled": true, "note": 99999999999999999999999}}}', "64 bits"),
    ('{"flags": {"a": {"enabled": true}}, "x": %s}' % deep(80), "levels deep"),
])
async def test_a_file_on_disk_the_loader_refuses_is_not_edited(start_blind_agent, tmp_path, text, words):
    flags = write_json(tmp_path / "flags.json", {"flags": {"a": {"enabled": True}}})
    running = await start_blind_agent([flags])
    flags.write_text(text)  # unseen by the agent, which still serves the good version
    message = await refused(running.socket_path, {"op": "set", "flag": "b", "enabled": True}, "INVALID_FLAG")
    assert words in message and "fix or replace the file first" in message
    assert flags.read_text() == text


async def test_a_document_with_empty_evaluators_is_simple_to_the_loader_and_to_set(start_agent, tmp_path):
    doc = {"$evaluators": {}, "flags": {"dark_mode": {"enabled": True}}}
    flags = write_json(tmp_path / "flags.json", doc)
    running = await start_agent([flags])
    sock = running.socket_path
    assert (await ok(sock, {"op": "health"}))["sources"][0]["format"] == "simple"
    await ok(sock, {"op": "set", "flag": "new_search", "enabled": True, "rollout_percentage": 30})
    written = json.loads(flags.read_text())
    # The writer kept the simple format (it used to write the flagd equivalent here).
    assert written["flags"]["new_search"] == {"enabled": True, "rollout_percentage": 30}
    assert written["$evaluators"] == {}
    assert (await ok(sock, {"op": "health"}))["sources"][0]["format"] == "simple"
    answer = await ok(sock, {"op": "evaluate", "flag": "new_search", "context": {"targetingKey": "u-1"}})
    assert answer["reason"] == "TARGETING_MATCH"


async def test_a_document_with_evaluators_is_flagd_to_the_loader_and_to_set(start_agent, tmp_path):
    doc = {"$evaluators": {"pro": {"==": [{"var": "plan"}, "pro"]}}, "flags": {"dark_mode": {"enabled": True}}}
    flags = write_json(tmp_path / "flags.json", doc)
    running = await start_agent([flags])
    sock = running.socket_path
    assert (await ok(sock, {"op": "health"}))["sources"][0]["format"] == "flagd"
    await ok(sock, {"op": "set", "flag": "new_search", "enabled": True})
    assert json.loads(flags.read_text())["flags"]["new_search"]["state"] == "ENABLED"
    assert (await ok(sock, {"op": "health"}))["sources"][0]["format"] == "flagd"


async def test_set_of_a_new_flag_from_simple_fields_into_a_flags_array_gives_it_its_key(start_agent, tmp_path):
    doc = {"flags": [{"key": "old", "state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}]}
    flags = write_json(tmp_path / "flags.json", doc)
    running = await start_agent([flags])
    await ok(running.socket_path, {"op": "set", "flag": "new", "enabled": True})
    assert [f["key"] for f in json.loads(flags.read_text())["flags"]] == ["old", "new"]
    assert (await ok(running.socket_path, {"op": "evaluate", "flag": "new"}))["value"] is True


def test_the_writer_reads_the_current_file_as_the_loader_does(tmp_path):
    # The writer's re-read used a plain open(): a FIFO swapped in after its checks would hang
    # every write, and a link to /dev/zero would read forever.
    import os

    from agent.sources.reading import UnreadableFile
    from agent.writes.durable import read_current

    path = tmp_path / "flags.json"
    assert read_current(str(path)) is None
    path.write_bytes(b"x" * 100)
    assert read_current(str(path), 100) == b"x" * 100
    with pytest.raises(UnreadableFile, match="more than the limit of 99"):
        read_current(str(path), 99)
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(UnreadableFile, match="FIFO"):
        read_current(str(path))
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(UnreadableFile, match="character device"):
        read_current(str(path))
