"""The etcd source and its writer against a real etcd, with the real store and reloader: what is
listed and watched is served at etcd's revision, writes through one agent are served by another,
and each failure (a bad value, a stopped store, a compaction past the watch, a start while the
store is down) keeps the last good flags and says why."""

from __future__ import annotations

import base64
import json

import attrs
import pytest
import trio

from agent.sources.base import LoadOptions
from agent.sources.etcd.layout import EtcdLocation, LocationError
from agent.sources.etcd.settings import EtcdSettings
from agent.sources.etcd.source import EtcdSource
from agent.sources.etcd.txn import Put
from agent.store.peer import Peer
from agent.store.reloader import Reloader
from agent.store.store import Store
from agent.writes.etcd import EtcdWriter
from protocol.errors import Conflict, InvalidFlag, Unavailable
from tests.fleet.etcd import b64

PREFIX = "/flagsock/test"
ON = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
OFF = {**ON, "defaultVariant": "off"}
PEER = Peer(pid=1, uid=0, gid=0)
FAST = dict(request_timeout=1.0, connect_timeout=0.5)


@attrs.define
class Agent:
    """The parts of a running agent that an etcd source touches."""

    source: EtcdSource
    store: Store
    reloader: Reloader
    writer: EtcdWriter
    reloaded: trio.Event = attrs.field(factory=trio.Event)

    def flag(self, key: str):
        return self.store.snapshot.flags.get(key)

    async def served(self, check, timeout: float = 5.0) -> None:
        """Wait until ``check(snapshot)`` holds, woken by each reload (no polling)."""
        with trio.fail_after(timeout):
            while not check(self.store.snapshot):
                await self.reloaded.wait()

    async def set(self, flag: str, definition: dict, **extra) -> int:
        answer = await self.writer.handle_set(PEER, {"op": "set", "flag": flag, "definition": definition, **extra})
        return answer["revision"]


@pytest.fixture
def start_agent(nursery):
    async def start(endpoints, prefix: str = PREFIX, state_dir=None, **settings) -> Agent:
        location = EtcdLocation.parse(f"etcd://{','.join(endpoints)}{prefix}")
        source = EtcdSource(location, EtcdSettings(location.endpoints, **{**FAST, **settings}), state_dir=state_dir)
        store = Store([source.name])
        reloader = Reloader(store, [source], LoadOptions())
        agent = Agent(source, store, reloader, EtcdWriter(store, reloader, source, fractional="v2"))

        def woke(result) -> None:
            agent.reloaded.set()
            agent.reloaded = trio.Event()

        reloader.on_reload.append(woke)
        await reloader.reload("start")

        async def changed(why: str) -> None:
            await reloader.reload(why)

        await nursery.start(source.watch, changed)
        return agent

    return start


def put_flag(etcd, flag: str, definition, prefix: str = PREFIX) -> int:
    value = definition if isinstance(definition, str) else json.dumps(definition)
    return etcd.put(f"{prefix}/{flag}", value)


def test_etcd_urls_name_endpoints_and_a_prefix():
    location = EtcdLocation.parse("etcd://10.0.0.1:2379,10.0.0.2:2379/flagsock/prod")
    assert location.endpoints == ("10.0.0.1:2379", "10.0.0.2:2379")
    assert location.prefix == b"/flagsock/prod/"
    assert location.flag_key("dark_mode") == b"/flagsock/prod/dark_mode"
    assert location.url == "etcd://10.0.0.1:2379,10.0.0.2:2379/flagsock/prod"
    for bad, words in [("etcd://h:2379", "no key prefix"), ("etcd:///p", "no endpoint"),
                       ("etcd://h/p", "not HOST:PORT"), ("etcd://h:99999/p", "not HOST:PORT")]:
        with pytest.raises(LocationError, match=words):
            EtcdLocation.parse(bad)


async def test_serves_the_prefix_with_its_meta_at_etcd_s_revision(etcd, start_agent):
    etcd.put(f"{PREFIX}/.meta", json.dumps({"metadata": {"team": "web"},
                                            "$evaluators": {"vip": {"in": [{"var": "targetingKey"}, ["u1"]]}}}))
    put_flag(etcd, "dark_mode", ON)
    newest = put_flag(etcd, "vip", {**OFF, "targeting": {"if": [{"$ref": "vip"}, "on", "off"]}})
    etcd.put("/elsewhere/x", "not a flag")
    agent = await start_agent(etcd.endpoints)
    await agent.served(lambda s: "vip" in s.flags)
    assert set(agent.store.snapshot.flags) == {"dark_mode", "vip"}
    assert agent.store.snapshot.revision == newest
    assert not agent.store.degraded


async def test_a_change_in_etcd_is_served_within_a_second(etcd, start_agent):
    put_flag(etcd, "dark_mode", ON)
    agent = await start_agent(etcd.endpoints)
    await agent.served(lambda s: "dark_mode" in s.flags)
    revision = put_flag(etcd, "dark_mode", OFF)
    await agent.served(lambda s: s.revision == revision, timeout=1.0)
    deleted = etcd.call("/v3/kv/deleterange", {"key": b64(f"{PREFIX}/dark_mode")})["header"]["revision"]
    await agent.served(lambda s: "dark_mode" not in s.flags, timeout=1.0)
    assert agent.store.snapshot.revision == int(deleted)


async def test_a_bad_value_keeps_the_last_good_flags_and_names_the_key(etcd, start_agent):
    put_flag(etcd, "dark_mode", ON)
    agent = await start_agent(etcd.endpoints)
    await agent.served(lambda s: "dark_mode" in s.flags)
    good = agent.store.snapshot.revision
    put_flag(etcd, "broken", "{not json")
    await agent.served(lambda s: agent.store.last_error is not None)
    assert f"{PREFIX}/broken" in agent.store.last_error.message
    assert agent.store.snapshot.revision == good and "broken" not in agent.store.snapshot.flags
    fixed = put_flag(etcd, "broken", OFF)
    await agent.served(lambda s: s.revision == fixed)
    assert agent.store.last_error is None


async def test_a_write_through_one_agent_is_served_by_another_at_the_same_revision(etcd, start_agent):
    put_flag(etcd, "dark_mode", ON)
    a = await start_agent(etcd.endpoints)
    b = await start_agent(etcd.endpoints)
    await a.served(lambda s: "dark_mode" in s.flags)
    revision = await a.set("dark_mode", OFF)
    assert a.store.snapshot.revision == revision  # answered once served here
    await b.served(lambda s: s.revision == revision)
    assert b.flag("dark_mode").fingerprint == a.flag("dark_mode").fingerprint
    [kv] = etcd.call("/v3/kv/range", {"key": b64(f"{PREFIX}/dark_mode")})["kvs"]
    assert json.loads(base64.b64decode(kv["value"])) == OFF


async def test_if_revision_holds_across_the_fleet_deletes_included(etcd, start_agent):
    put_flag(etcd, "a", ON)
    put_flag(etcd, "b", ON)
    one = await start_agent(etcd.endpoints)
    two = await start_agent(etcd.endpoints)
    await one.served(lambda s: "b" in s.flags)
    await two.served(lambda s: "b" in s.flags)
    seen = two.store.snapshot.revision
    deleted = (await one.writer.handle_delete(PEER, {"op": "delete", "flag": "b", "if_revision": seen}))["revision"]
    with pytest.raises(Conflict, match=f"changed after revision {seen}"):
        await two.set("a", OFF, if_revision=seen)  # only a delete happened since: still a conflict
    await two.served(lambda s: s.revision == deleted)
    assert await two.set("a", OFF, if_revision=deleted) > deleted


async def test_an_invalid_definition_writes_nothing(etcd, start_agent):
    agent = await start_agent(etcd.endpoints)
    await agent.served(lambda s: agent.source.version is not None)
    before = etcd.revision()
    with pytest.raises(InvalidFlag, match="nothing was written"):
        await agent.set("bad", {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "missing"})
    with pytest.raises(InvalidFlag, match="reserved"):
        await agent.set(".meta", ON)
    assert etcd.revision() == before


async def test_a_write_while_the_store_is_down_is_unavailable_within_seconds(etcd, start_agent):
    put_flag(etcd, "dark_mode", ON)
    agent = await start_agent(etcd.endpoints)
    await agent.served(lambda s: "dark_mode" in s.flags)
    etcd.members[0].kill()
    before = trio.current_time()
    with pytest.raises(Unavailable, match="nothing was changed") as caught:
        await agent.set("dark_mode", OFF)
    assert trio.current_time() - before < 3.0
    assert etcd.endpoints[0] in caught.value.message
    await agent.served(lambda s: agent.store.degraded)
    assert "dark_mode" in agent.store.snapshot.flags  # still served from memory
    await trio.to_thread.run_sync(etcd.members[0].start)
    revision = await agent.set("dark_mode", OFF)
    await agent.served(lambda s: not agent.store.degraded and s.revision >= revision)


async def test_a_compaction_past_the_watch_makes_it_list_again(etcd, start_agent, fault_proxy):
    put_flag(etcd, "dark_mode", ON)
    proxy = await fault_proxy(etcd.members[0].client_port)
    agent = await start_agent([f"127.0.0.1:{proxy.port}"], watch_idle_timeout=0.5)
    await agent.served(lambda s: "dark_mode" in s.flags)
    proxy.hang()
    put_flag(etcd, "dark_mode", OFF)
    newest = put_flag(etcd, "added", ON)
    etcd.compact()
    await proxy.pass_through()
    await agent.served(lambda s: s.revision == newest)
    assert "added" in agent.store.snapshot.flags


async def test_an_agent_started_while_the_store_is_down_serves_it_when_it_returns(etcd, start_agent):
    written = put_flag(etcd, "dark_mode", ON)
    etcd.members[0].stop()
    agent = await start_agent(etcd.endpoints)
    assert agent.store.degraded and agent.store.snapshot.flags == {}
    await agent.served(lambda s: agent.store.last_error is not None)
    assert "unreachable" in agent.store.last_error.message
    await trio.to_thread.run_sync(etcd.members[0].start)
    await agent.served(lambda s: s.revision == written, timeout=10)
    assert not agent.store.degraded


async def test_a_write_whose_answer_is_lost_is_found_committed_once(etcd, nursery, fault_proxy):
    proxy = await fault_proxy(etcd.members[0].client_port)
    location = EtcdLocation.parse(f"etcd://127.0.0.1:{proxy.port},{etcd.endpoints[0]}{PREFIX}")
    source = EtcdSource(location, EtcdSettings(location.endpoints, request_timeout=0.5, connect_timeout=0.5))

    async def ignore(why: str) -> None:
        pass

    await nursery.start(source.watch, ignore)
    assert await source.wait_listed(5)
    proxy.swallow_replies()  # the txn reaches etcd through the proxy; its answer never comes back
    revision = await source.commit(Put(location.flag_key("lost"), json.dumps(ON).encode()), None, {"test": 1})
    got = etcd.call("/v3/kv/range", {"key": b64(f"{PREFIX}/lost")})
    [kv] = got["kvs"]
    assert int(kv["mod_revision"]) == revision and kv["version"] == "1"  # committed once, found by its marker


async def test_a_write_that_never_arrived_is_sent_again_once(etcd, nursery, fault_proxy):
    proxy = await fault_proxy(etcd.members[0].client_port)
    location = EtcdLocation.parse(f"etcd://127.0.0.1:{proxy.port},{etcd.endpoints[0]}{PREFIX}")
    source = EtcdSource(location, EtcdSettings(location.endpoints, request_timeout=0.5, connect_timeout=0.5))

    async def ignore(why: str) -> None:
        pass

    await nursery.start(source.watch, ignore)
    assert await source.wait_listed(5)
    seen = etcd.revision()
    proxy.hang()  # the txn is sent into the proxy and stays there
    revision = await source.commit(Put(location.flag_key("late"), json.dumps(ON).encode()), seen, {"test": 2})
    [kv] = etcd.call("/v3/kv/range", {"key": b64(f"{PREFIX}/late")})["kvs"]
    assert int(kv["mod_revision"]) == revision and kv["version"] == "1"
    # Should the first attempt still arrive, its if_revision no longer holds: it cannot write again.


async def test_the_last_good_version_kept_on_disk_is_served_while_etcd_is_down(etcd, start_agent, tmp_path):
    put_flag(etcd, "dark_mode", ON)
    good = put_flag(etcd, "vip", OFF)
    first = await start_agent(etcd.endpoints, state_dir=str(tmp_path))
    await first.served(lambda s: s.revision == good)
    assert first.source.status() == {"kind": "etcd", "stale": False, "fetched_at": first.source.fetched_at}
    put_flag(etcd, "broken", "{not json")  # a bad version never replaces the good copy
    await first.served(lambda s: first.store.last_error is not None)
    etcd.members[0].stop()

    second = await start_agent(etcd.endpoints, state_dir=str(tmp_path))
    snap = second.store.snapshot
    assert set(snap.flags) == {"dark_mode", "vip"} and snap.revision == good
    status = second.source.status()
    assert status["stale"] and status["fetched_at"] <= first.source.fetched_at
    assert second.store.degraded and "kept from an earlier run" in second.store.last_error.message

    await trio.to_thread.run_sync(etcd.members[0].start)
    fixed = put_flag(etcd, "broken", ON)
    await second.served(lambda s: s.revision == fixed, timeout=10)
    assert not second.source.status()["stale"] and not second.store.degraded
