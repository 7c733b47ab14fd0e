"""``set`` and ``delete`` through a real socket against a real agent and real files."""

from __future__ import annotations

import json
import os

import trio

from tests.helpers import SEED, LineClient, write_json
from tests.writes.conftest import FLAGD_DOC, ok, refused, reload_count, request, wait_for_watcher_reload


async def value(sock, flag, user=None):
    ctx = {"targetingKey": user} if user else {}
    return (await ok(sock, {"op": "evaluate", "flag": flag, "context": ctx}))["value"]


async def test_set_with_simple_fields_is_on_disk_and_served(start_agent, simple_file):
    running = await start_agent([simple_file])
    sock = running.socket_path
    result = await ok(sock, {"op": "set", "flag": "dark_mode", "enabled": False})
    assert result == {"revision": 2}
    assert json.loads(simple_file.read_text())["flags"]["dark_mode"]["enabled"] is False
    assert await value(sock, "dark_mode") is False
    await ok(sock, {"op": "set", "flag": "fresh", "enabled": True, "rollout_percentage": 0, "allowed_users": ["ann"]})
    assert await value(sock, "fresh", "ann") is True
    assert await value(sock, "fresh", "bob") is False


async def test_set_with_a_definition_and_delete(start_agent, simple_file):
    running = await start_agent([simple_file])
    sock = running.socket_path
    definition = {"state": "ENABLED", "variants": {"small": 1, "big": 10}, "defaultVariant": "big"}
    assert (await ok(sock, {"op": "set", "flag": "limit", "definition": definition}))["revision"] == 2
    assert await value(sock, "limit") == 10
    assert json.loads(simple_file.read_text())["flags"]["limit"] == definition
    assert (await ok(sock, {"op": "delete", "flag": "limit", "if_revision": 2}))["revision"] == 3
    assert "limit" not in json.loads(simple_file.read_text())["flags"]
    assert (await request(sock, {"op": "evaluate", "flag": "limit"}))["error"]["code"] == "FLAG_NOT_FOUND"


async def test_refusals_leave_the_file_byte_for_byte_unchanged(start_agent, simple_file):
    running = await start_agent([simple_file])
    sock = running.socket_path
    before = simple_file.read_bytes()
    cases = [
        ({"op": "set", "flag": "dark_mode", "enabled": "yes"}, "INVALID_FLAG", "enabled"),
        ({"op": "set", "flag": "dark_mode", "enabled": True, "rollout_percentage": 101}, "INVALID_FLAG", "rollout_percentage"),
        ({"op": "set", "flag": "dark_mode", "enabled": True, "allowed_users": [1]}, "INVALID_FLAG", "allowed_users"),
        ({"op": "set", "flag": "x", "definition": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}},
         "INVALID_FLAG", "defaultVariant"),
        ({"op": "set", "flag": "x", "definition": {"state": "ON", "variants": {"a": 1}}}, "INVALID_FLAG", "state"),
        ({"op": "set", "flag": "x", "definition": {"state": "ENABLED", "variants": {"a": 1},
                                                   "targeting": {"nope": [1]}}}, "INVALID_FLAG", "targeting"),
        ({"op": "set", "flag": "x", "definition": {"state": "ENABLED", "variants": {"a": 1}}, "enabled": True},
         "BAD_REQUEST", "not both"),
        ({"op": "set", "flag": "x", "enabled": True, "colour": "red", "size": 1}, "BAD_REQUEST", "'colour', 'size'"),
        ({"op": "set", "flag": "", "enabled": True}, "BAD_REQUEST", "flag"),
        ({"op": "set", "flag": "x"}, "BAD_REQUEST", "definition"),
        ({"op": "set", "flag": "x", "rollout_percentage": 5}, "BAD_REQUEST", "enabled"),
        ({"op": "set", "flag": "x", "enabled": True, "if_revision": "1"}, "BAD_REQUEST", "if_revision"),
        ({"op": "delete", "flag": "missing"}, "FLAG_NOT_FOUND", "missing"),
        ({"op": "delete", "flag": "dark_mode", "enabled": True}, "BAD_REQUEST", "enabled"),
    ]
    for message, code, fragment in cases:
        text = await refused(sock, message, code)
        assert fragment in text, (message, text)
    assert simple_file.read_bytes() == before
    assert (await ok(sock, {"op": "ping"}))["revision"] == 1
    assert not [p for p in os.listdir(simple_file.parent) if p.endswith(".flagsock-tmp")]


async def test_a_refused_definition_names_every_problem(start_agent, simple_file):
    running = await start_agent([simple_file])
    definition = {"state": "ENABLED", "variants": {"a": 1, "b": "two"}, "defaultVariant": "c",
                  "targeting": {"if": [{"nope": []}, "a", "b"]}}
    text = await refused(running.socket_path, {"op": "set", "flag": "x", "definition": definition}, "INVALID_FLAG")
    for spot in ("variants.b", "defaultVariant", "targeting.if[0]"):
        assert spot in text, text


async def test_flagd_file_stays_flagd_with_its_indentation_and_key_order(start_agent, flagd_file):
    running = await start_agent([flagd_file])
    sock = running.socket_path
    await ok(sock, {"op": "set", "flag": "kill_switch", "enabled": True})
    await ok(sock, {"op": "set", "flag": "rollout", "enabled": True, "rollout_percentage": 30, "allowed_users": ["vip"]})
    expected = json.loads(json.dumps(FLAGD_DOC))
    expected["flags"]["kill_switch"]["defaultVariant"] = "on"
    expected["flags"]["rollout"] = {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
        "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["vip"]]}, "on",
                             {"fractional": [["on", 30], ["off", 70]]}]},
    }
    assert flagd_file.read_text() == json.dumps(expected, indent=4) + "\n"
    assert await value(sock, "rollout", "vip") is True
    health = await ok(sock, {"op": "health"})
    assert health["sources"][0]["format"] == "flagd"


async def test_simple_file_stays_simple_text_for_text(start_agent, simple_file):
    running = await start_agent([simple_file])
    sock = running.socket_path
    await ok(sock, {"op": "set", "flag": "new_checkout_flow", "enabled": True, "rollout_percentage": 50})
    await ok(sock, {"op": "set", "flag": "late", "enabled": False})
    await ok(sock, {"op": "delete", "flag": "dark_mode"})
    expected = json.loads(json.dumps(SEED))
    expected["flags"]["new_checkout_flow"]["rollout_percentage"] = 50
    expected["flags"]["late"] = {"name": "late", "enabled": False}
    del expected["flags"]["dark_mode"]
    assert simple_file.read_text() == json.dumps(expected, indent=2)  # write_json leaves no final newline
    assert (await ok(sock, {"op": "health"}))["sources"][0]["format"] == "simple"


async def test_if_revision_conflict_names_the_served_revision(start_agent, simple_file):
    running = await start_agent([simple_file])
    sock = running.socket_path
    assert (await ok(sock, {"op": "set", "flag": "a", "enabled": True, "if_revision": 1}))["revision"] == 2
    before = simple_file.read_bytes()
    text = await refused(sock, {"op": "set", "flag": "a", "enabled": False, "if_revision": 1}, "CONFLICT")
    assert "revision 2 is served" in text
    await refused(sock, {"op": "delete", "flag": "a", "if_revision": 1}, "CONFLICT")
    assert simple_file.read_bytes() == before


async def test_outside_edit_not_yet_served_is_a_conflict_or_the_base(start_blind_agent, simple_file):
    running = await start_blind_agent([simple_file])
    sock = running.socket_path
    edited = json.loads(json.dumps(SEED))
    edited["flags"]["outside"] = {"enabled": True}
    write_json(simple_file, edited)
    assert (await ok(sock, {"op": "ping"}))["revision"] == 1, "the blind agent must not have seen the edit"
    text = await refused(sock, {"op": "set", "flag": "dark_mode", "enabled": False, "if_revision": 1}, "CONFLICT")
    assert "changed on disk" in text
    assert json.loads(simple_file.read_text()) == edited
    # Without if_revision the change lands on top of what is on disk, and both are served.
    assert (await ok(sock, {"op": "set", "flag": "dark_mode", "enabled": False}))["revision"] == 2
    on_disk = json.loads(simple_file.read_text())
    assert on_disk["flags"]["outside"] == {"enabled": True}
    assert on_disk["flags"]["dark_mode"]["enabled"] is False
    assert await value(sock, "outside") is True


async def test_read_only_flag(start_agent, simple_file):
    running = await start_agent([simple_file], read_only=True)
    text = await refused(running.socket_path, {"op": "set", "flag": "a", "enabled": True}, "READ_ONLY")
    assert "--read-only" in text


async def test_several_sources_need_write_to(start_agent, simple_file, flagd_file):
    running = await start_agent([simple_file, flagd_file])
    text = await refused(running.socket_path, {"op": "delete", "flag": "banner"}, "READ_ONLY")
    assert "--write-to" in text


async def test_write_to_picks_the_file_and_leaves_the_other_alone(start_agent, simple_file, flagd_file):
    untouched = simple_file.read_bytes()
    running = await start_agent([simple_file, flagd_file], write_to=str(flagd_file))
    sock = running.socket_path
    await ok(sock, {"op": "set", "flag": "banner", "definition": {"state": "DISABLED", "variants": {"red": "#f00"}}})
    assert json.loads(flagd_file.read_text())["flags"]["banner"]["state"] == "DISABLED"
    assert simple_file.read_bytes() == untouched
    text = await refused(sock, {"op": "delete", "flag": "dark_mode"}, "FLAG_NOT_FOUND")
    assert str(flagd_file) in text


async def test_a_later_source_that_overrides_the_flag_is_named(start_agent, simple_file, tmp_path):
    override = write_json(tmp_path / "override.json", {"flags": {"dark_mode": {"enabled": False}}})
    running = await start_agent([simple_file, override], write_to=str(simple_file))
    text = await refused(running.socket_path, {"op": "set", "flag": "dark_mode", "enabled": True}, "INVALID_FLAG")
    assert "override.json" in text


async def test_unwritable_target_is_read_only_with_the_reason(start_agent, simple_file):
    simple_file.chmod(0o444)
    running = await start_agent([simple_file])
    text = await refused(running.socket_path, {"op": "set", "flag": "a", "enabled": True}, "READ_ONLY")
    assert "no write permission" in text and "0444" in text


async def test_target_made_unwritable_after_start_is_refused_at_write_time(start_agent, simple_file):
    running = await start_agent([simple_file])
    simple_file.chmod(0o444)
    before = simple_file.read_bytes()
    text = await refused(running.socket_path, {"op": "set", "flag": "a", "enabled": True}, "READ_ONLY")
    assert str(simple_file) in text
    assert simple_file.read_bytes() == before


async def test_written_file_keeps_its_mode(start_agent, simple_file):
    simple_file.chmod(0o640)
    running = await start_agent([simple_file])
    await ok(running.socket_path, {"op": "set", "flag": "a", "enabled": True})
    assert simple_file.stat().st_mode & 0o777 == 0o640


async def test_own_write_makes_no_second_revision_and_no_spurious_event(start_agent, simple_file):
    running = await start_agent([simple_file])
    sock = running.socket_path
    async with await LineClient.connect(sock) as sub:
        assert (await sub.request({"op": "subscribe"}))["result"]["revision"] == 1
        written = (await ok(sock, {"op": "set", "flag": "dark_mode", "enabled": False}))["revision"]
        reloads = await reload_count(sock)
        event = await sub.receive()
        assert event == {"event": "changed", "revision": written, "flags": {"dark_mode": "updated"}}
        await wait_for_watcher_reload(sock, reloads)
        assert (await ok(sock, {"op": "ping"}))["revision"] == written
        # The next event is the next write's own: nothing came in between.
        second = (await ok(sock, {"op": "set", "flag": "other", "enabled": True}))["revision"]
        assert second == written + 1
        assert await sub.receive() == {"event": "changed", "revision": second, "flags": {"other": "added"}}


async def test_concurrent_writers_are_all_acknowledged_and_kept(start_agent, simple_file):
    running = await start_agent([simple_file])
    sock = running.socket_path
    writers, per_writer = 6, 12
    revisions: dict[int, list[int]] = {}

    async def writer(n: int) -> None:
        async with await LineClient.connect(sock) as c:
            got = revisions.setdefault(n, [])
            for i in range(per_writer):
                result = await c.result({"op": "set", "flag": f"w{n}_{i}", "enabled": i % 2 == 0,
                                         "allowed_users": [str(n)]})
                got.append(result["revision"])

    async with trio.open_nursery() as nursery:
        for n in range(writers):
            nursery.start_soon(writer, n)
    every = [r for got in revisions.values() for r in got]
    assert len(set(every)) == writers * per_writer, "each write must get its own revision"
    assert all(got == sorted(got) and len(set(got)) == len(got) for got in revisions.values())
    assert sorted(every) == list(range(2, 2 + writers * per_writer))
    flags = json.loads(simple_file.read_text())["flags"]
    for n in range(writers):
        for i in range(per_writer):
            assert flags[f"w{n}_{i}"]["enabled"] is (i % 2 == 0)
    assert (await ok(sock, {"op": "ping"}))["revision"] == 1 + writers * per_writer


async def test_evaluations_are_answered_while_a_write_is_in_flight(start_agent, simple_file, monkeypatch):
    import agent.writes.writer as writes

    release = trio.Event()
    entered = trio.Event()
    token = trio.lowlevel.current_trio_token()
    real = writes.replace_durably

    def slow_replace(path, data):
        trio.from_thread.run_sync(entered.set, trio_token=token)
        trio.from_thread.run(release.wait, trio_token=token)
        real(path, data)

    monkeypatch.setattr(writes, "replace_durably", slow_replace)
    running = await start_agent([simple_file])
    sock = running.socket_path
    results = []

    async def write() -> None:
        results.append(await ok(sock, {"op": "set", "flag": "dark_mode", "enabled": False}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await entered.wait()
        with trio.fail_after(2):
            assert await value(sock, "dark_mode") is True  # served while the write waits on disk
        assert results == []
        release.set()
    assert results == [{"revision": 2}]
    assert await value(sock, "dark_mode") is False


async def test_every_write_and_refusal_is_audited_with_who_and_revisions(start_agent, simple_file, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="flagsock.audit")
    running = await start_agent([simple_file])
    sock = running.socket_path
    await ok(sock, {"op": "set", "flag": "dark_mode", "enabled": False})
    await refused(sock, {"op": "delete", "flag": "ghost"}, "FLAG_NOT_FOUND")
    lines = [r.getMessage() for r in caplog.records if r.name == "flagsock.audit"]
    me = f"pid {os.getpid()} uid {os.geteuid()}"
    assert any(me in line and "set of 'dark_mode'" in line and "revision 1 -> 2" in line for line in lines), lines
    assert any(me in line and "refused delete of 'ghost'" in line and "revision 2" in line and "FLAG_NOT_FOUND" in line
               for line in lines), lines
    written = next(r for r in caplog.records if r.name == "flagsock.audit" and "set of" in r.getMessage())
    assert (written.peer_uid, written.audit_op, written.revision_before, written.revision_after) == (os.geteuid(), "set", 1, 2)


async def test_a_missing_flag_file_is_created_by_the_first_write(start_agent, tmp_path):
    path = tmp_path / "new.json"
    running = await start_agent([path])
    assert (await ok(running.socket_path, {"op": "set", "flag": "first", "enabled": True}))["revision"] == 1
    assert json.loads(path.read_text()) == {"flags": {"first": {"enabled": True}}}
    assert await value(running.socket_path, "first") is True
    assert (await ok(running.socket_path, {"op": "health"}))["status"] == "ok"


async def test_socket_group_and_mode_are_applied(start_agent, simple_file, sock_dir):
    import grp

    group = grp.getgrgid(65534).gr_name if os.geteuid() == 0 else grp.getgrgid(os.getegid()).gr_name
    running = await start_agent([simple_file], socket_mode=0o660, socket_group=group)
    st = os.stat(running.socket_path)
    assert (st.st_mode & 0o777, grp.getgrgid(st.st_gid).gr_name) == (0o660, group)
