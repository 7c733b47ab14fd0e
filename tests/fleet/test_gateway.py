"""The etcd v3 JSON gateway client against a real etcd: reads, transactions, watches, and each
way the store can fail (a cut stream, compaction, a hung member, a dead member, a member without
a leader, auth, a value over the request limit)."""

from __future__ import annotations

import pytest
import trio

from agent.sources.etcd.codec import prefix_end
from agent.sources.etcd.errors import (
    AuthError,
    Compacted,
    EtcdTimeout,
    EtcdUnavailable,
    NoLeader,
    RequestTooLarge,
    WatchIdle,
)
from agent.sources.etcd.follow import Follower
from agent.sources.etcd.gateway import EtcdGateway
from agent.sources.etcd.settings import EtcdSettings
from agent.sources.etcd.txn import Compare, Delete, Put

FAST = dict(request_timeout=1.0, connect_timeout=0.5)


@pytest.fixture
async def gw(etcd):
    async with EtcdGateway(EtcdSettings(tuple(etcd.endpoints), **FAST)) as gateway:
        yield gateway


class Collector:
    """A Follower handler keeping (type, key, value, mod_revision) and waking waiters."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, bytes, int]] = []
        self._changed = trio.Event()

    async def __call__(self, response) -> None:
        for event in response.events:
            self.seen.append((event.type, event.kv.key, event.kv.value, event.kv.mod_revision))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            while len(self.seen) < count:
                await self._changed.wait()


# ---- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("prefix", "end"), [
    (b"/flags/", b"/flags0"), (b"a", b"b"), (b"a\xff", b"b"), (b"a\xff\xff", b"b"), (b"\xff", b"\0"), (b"", b"\0"),
])
def test_prefix_end_is_the_first_key_after_the_prefix(prefix, end):
    assert prefix_end(prefix) == end


# ---- reads and transactions --------------------------------------------------------------------


async def test_range_prefix_lists_only_keys_under_the_prefix_across_pages(gw):
    for key in (b"/p/a", b"/p/b", b"/p/c", b"/p0", b"/q", b"/p"):
        await gw.put(key, key + b"!")
    listing = await gw.range_prefix(b"/p/", page_size=2)
    assert [kv.key for kv in listing.kvs] == [b"/p/a", b"/p/b", b"/p/c"]
    assert [kv.value for kv in listing.kvs] == [b"/p/a!", b"/p/b!", b"/p/c!"]
    assert listing.revision == await gw.revision()


async def test_range_pages_are_read_at_the_revision_of_the_first_page(gw, etcd):
    for i in range(4):
        await gw.put(b"/p/%d" % i, b"old")
    first = await gw.range(b"/p/", prefix_end(b"/p/"), limit=2)
    await gw.put(b"/p/3", b"new")
    rest = await gw.range(first.kvs[-1].key + b"\0", prefix_end(b"/p/"), revision=first.revision)
    assert [kv.value for kv in rest.kvs] == [b"old", b"old"]


async def test_txn_on_mod_revision_applies_once_then_conflicts(gw):
    revision = await gw.put(b"/p/k", b"one")
    won = await gw.txn([Compare.mod(b"/p/k", "EQUAL", revision)], [Put(b"/p/k", b"two")])
    assert won.succeeded and won.revision == revision + 1
    lost = await gw.txn([Compare.mod(b"/p/k", "EQUAL", revision)], [Put(b"/p/k", b"three")])
    assert not lost.succeeded and lost.revision == won.revision
    [kv] = (await gw.range(b"/p/k")).kvs
    assert kv.value == b"two" and kv.mod_revision == won.revision


async def test_txn_create_revision_zero_means_the_key_is_absent(gw):
    assert (await gw.txn([Compare.created(b"/p/new", "EQUAL", 0)], [Put(b"/p/new", b"1")])).succeeded
    assert not (await gw.txn([Compare.created(b"/p/new", "EQUAL", 0)], [Put(b"/p/new", b"2")])).succeeded


async def test_txn_compare_over_a_prefix_sees_a_change_to_any_key_under_it(gw):
    await gw.put(b"/p/a", b"1")
    seen = await gw.put(b"/p/b", b"1")
    unchanged = [Compare.mod(b"/p/", "LESS", seen + 1, prefix_end(b"/p/"))]
    assert (await gw.txn(unchanged, [Put(b"/p/c", b"1")])).succeeded
    assert not (await gw.txn(unchanged, [Put(b"/p/d", b"1")])).succeeded


async def test_delete_of_a_prefix_reports_how_many_keys_went(gw):
    for key in (b"/p/a", b"/p/b", b"/q"):
        await gw.put(key, b"x")
    result = await gw.txn(success=[Delete(b"/p/", prefix_end(b"/p/"))])
    assert result.deleted == 2
    assert (await gw.range_prefix(b"/p/")).kvs == ()


# ---- watches ------------------------------------------------------------------------------------


async def test_watch_sees_puts_and_deletes_in_order_with_their_revisions(gw):
    start = await gw.revision() + 1
    async with gw.watch(b"/p/", prefix_end(b"/p/"), start) as stream:
        r1 = await gw.put(b"/p/a", b"1")
        await gw.put(b"/elsewhere", b"x")
        r2 = await gw.put(b"/p/a", b"2")
        r3 = (await gw.delete(b"/p/a")).revision
        seen = []
        with trio.fail_after(5):
            async for response in stream:
                seen += [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in response.events]
                if len(seen) == 3:
                    break
        assert stream.next_revision == r3 + 1
    assert seen == [("PUT", b"/p/a", b"1", r1), ("PUT", b"/p/a", b"2", r2), ("DELETE", b"/p/a", b"", r3)]


async def test_watch_resumes_from_the_last_revision_after_the_stream_is_cut(etcd, fault_proxy):
    proxy = await fault_proxy(etcd.members[0].client_port)
    async with EtcdGateway(EtcdSettings((f"127.0.0.1:{proxy.port}",), **FAST)) as gw, \
            trio.open_nursery() as nursery:
        collector = Collector()
        follower = Follower(gw, b"/p/", prefix_end(b"/p/"), await gw.revision() + 1)
        await nursery.start(follower.run, collector)
        first = [await gw.put(b"/p/k", b"%d" % i) for i in range(5)]
        await collector.wait_for(5)
        proxy.cut()
        then = [etcd.put("/p/k", str(i)) for i in range(5, 10)]  # straight to etcd, while cut
        await collector.wait_for(10)
        assert follower.reconnects >= 1
        assert [s[3] for s in collector.seen] == first + then  # each once, in order
        assert [s[2] for s in collector.seen] == [b"%d" % i for i in range(10)]
        nursery.cancel_scope.cancel()


async def test_watch_from_a_compacted_revision_raises_compacted(gw, etcd):
    old = await gw.put(b"/p/k", b"1")
    await gw.put(b"/p/k", b"2")
    kept = etcd.compact()
    async with gw.watch(b"/p/", prefix_end(b"/p/"), old) as stream:
        with pytest.raises(Compacted) as caught:
            await stream.__anext__()
    assert caught.value.requested == old and caught.value.compact_revision == kept
    assert "list the keys again" in str(caught.value)
    follower = Follower(gw, b"/p/", prefix_end(b"/p/"), old)
    with pytest.raises(Compacted):
        await follower.run(Collector())


async def test_range_at_a_compacted_revision_raises_compacted(gw, etcd):
    old = await gw.put(b"/p/k", b"1")
    await gw.put(b"/p/k", b"2")
    etcd.compact()
    with pytest.raises(Compacted):
        await gw.range(b"/p/k", revision=old)


async def test_progress_notices_advance_the_resume_revision(start_etcd):
    etcd = start_etcd(1, ["--experimental-watch-progress-notify-interval", "100ms"])
    async with EtcdGateway(EtcdSettings(tuple(etcd.endpoints), **FAST)) as gw:
        start = await gw.revision() + 1
        elsewhere = await gw.put(b"/elsewhere", b"x")
        async with gw.watch(b"/p/", prefix_end(b"/p/"), start) as stream:
            with trio.fail_after(5):
                response = await stream.__anext__()
        assert response.progress and response.revision >= elsewhere
        assert stream.next_revision == response.revision + 1


# ---- failures ------------------------------------------------------------------------------------


async def test_a_hung_store_hits_the_deadline(etcd, fault_proxy):
    proxy = await fault_proxy(etcd.members[0].client_port)
    settings = EtcdSettings((f"127.0.0.1:{proxy.port}",), request_timeout=0.5, connect_timeout=0.5,
                            watch_idle_timeout=0.5)
    async with EtcdGateway(settings) as gw, trio.open_nursery() as nursery:
        start = await gw.revision() + 1
        async with gw.watch(b"/p/", prefix_end(b"/p/"), start) as stream:
            proxy.hang()
            with pytest.raises(WatchIdle), trio.fail_after(3):
                await stream.__anext__()
        before = trio.current_time()
        with pytest.raises(EtcdUnavailable) as caught:
            await gw.range(b"/p/k")
        assert trio.current_time() - before < 1.5
        assert isinstance(caught.value.attempts[0], EtcdTimeout)
        assert f"127.0.0.1:{proxy.port}" in str(caught.value)

        # A follower rides out the hang: it reopens (and times out) until the store answers again.
        collector = Collector()
        follower = Follower(gw, b"/p/", prefix_end(b"/p/"), start)
        nursery.start_soon(follower.run, collector)
        written = etcd.put("/p/k", "during the hang")
        with trio.move_on_after(1):
            await collector.wait_for(1)
        assert collector.seen == []
        await proxy.pass_through()
        await collector.wait_for(1)
        assert collector.seen == [("PUT", b"/p/k", b"during the hang", written)]
        nursery.cancel_scope.cancel()


async def test_reads_writes_and_watches_fail_over_when_a_member_is_killed(etcd_cluster):
    first, *others = etcd_cluster.members
    async with EtcdGateway(EtcdSettings(tuple(etcd_cluster.endpoints), **FAST)) as gw, \
            trio.open_nursery() as nursery:
        collector = Collector()
        follower = Follower(gw, b"/p/", prefix_end(b"/p/"), await gw.revision() + 1)
        await nursery.start(follower.run, collector)
        assert gw.endpoint == first.endpoint
        before = await gw.put(b"/p/k", b"before")
        await collector.wait_for(1)

        first.kill()
        await trio.to_thread.run_sync(etcd_cluster.wait_healthy)
        after = await gw.put(b"/p/k", b"after")
        assert gw.endpoint != first.endpoint
        assert (await gw.range(b"/p/k")).kvs[0].value == b"after"
        await collector.wait_for(2)
        assert [s[3] for s in collector.seen] == [before, after]
        assert follower.reconnects >= 1
        nursery.cancel_scope.cancel()


async def test_a_member_without_a_leader_refuses_at_once(etcd_cluster):
    survivor, *others = etcd_cluster.members
    async with EtcdGateway(EtcdSettings((survivor.endpoint,), request_timeout=5.0, connect_timeout=0.5)) as gw:
        await gw.put(b"/p/k", b"1")
        for member in others:
            member.kill()
        # The survivor notices it has lost its quorum after an election timeout (0.5 s here).
        with trio.fail_after(10):
            while True:
                try:
                    await gw.range(b"/p/k")
                except EtcdUnavailable as exc:
                    if isinstance(exc.attempts[0], NoLeader):
                        break
                await trio.sleep(0.1)
        before = trio.current_time()
        with pytest.raises(EtcdUnavailable) as caught:
            await gw.range(b"/p/k")
        assert trio.current_time() - before < 1.0, "refused by the deadline, not at once"
        assert "no leader" in str(caught.value)
        with pytest.raises(EtcdUnavailable):
            async with gw.watch(b"/p/", prefix_end(b"/p/"), 1):
                pass


async def _enable_auth(gw: EtcdGateway, password: str) -> None:
    await gw.call("/v3/auth/user/add", {"name": "root", "password": password}, write=True)
    await gw.call("/v3/auth/user/grant", {"user": "root", "role": "root"}, write=True)
    await gw.call("/v3/auth/enable", {}, write=True)


async def test_auth_logs_in_refuses_bad_credentials_and_logs_in_again_when_the_token_is_dropped(etcd):
    endpoints = tuple(etcd.endpoints)
    async with EtcdGateway(EtcdSettings(endpoints, **FAST)) as anonymous:
        await _enable_auth(anonymous, "s3cret")
        with pytest.raises(AuthError) as caught:
            await anonymous.range(b"/p/k")
        assert etcd.endpoints[0] in str(caught.value) and "user name is empty" in str(caught.value)

    async with EtcdGateway(EtcdSettings(endpoints, user="root", password="wrong", **FAST)) as wrong:
        with pytest.raises(AuthError, match="authentication failed"):
            await wrong.range(b"/p/k")

    async with EtcdGateway(EtcdSettings(endpoints, user="root", password="s3cret", **FAST)) as gw:
        written = await gw.put(b"/p/k", b"1")
        # Turning auth off and on drops every token, as expiry (--auth-token-ttl) does: etcd then
        # answers "invalid auth token" to a call and "permission denied" to a watch.
        await _drop_tokens(gw)
        assert (await gw.range(b"/p/k")).kvs[0].value == b"1"
        await _drop_tokens(gw)
        async with gw.watch(b"/p/", prefix_end(b"/p/"), written + 1) as stream:
            again = await gw.put(b"/p/k", b"2")
            with trio.fail_after(5):
                response = await stream.__anext__()
        assert response.events[0].kv.mod_revision == again


async def _drop_tokens(gw: EtcdGateway) -> None:
    await gw.call("/v3/auth/disable", {}, write=True)
    async with EtcdGateway(gw.settings.__class__(gw.settings.endpoints, **FAST)) as anonymous:
        await anonymous.call("/v3/auth/enable", {}, write=True)


async def test_a_value_over_the_request_limit_is_refused_before_sending(gw):
    big = b"x" * (1536 * 1024)
    with pytest.raises(RequestTooLarge) as caught:
        await gw.put(b"/p/big", big)
    message = str(caught.value)
    assert "1572864" in message and "/p/big" in message and "--max-request-bytes" in message
    assert (await gw.range(b"/p/big")).kvs == ()


async def test_etcd_s_own_size_refusal_is_the_same_error(etcd):
    async with EtcdGateway(EtcdSettings(tuple(etcd.endpoints), max_request_bytes=8 << 20, **FAST)) as gw:
        with pytest.raises(RequestTooLarge, match="request is too large"):
            await gw.put(b"/p/big", b"x" * (1600 * 1024))


async def test_tls_with_a_client_certificate(start_etcd, tls_files):
    etcd = start_etcd(1, tls=tls_files)
    endpoints = tuple(etcd.endpoints)
    tls = dict(ca=tls_files.ca, cert=tls_files.client_cert, key=tls_files.client_key)
    async with EtcdGateway(EtcdSettings(endpoints, **tls, **FAST)) as gw:
        revision = await gw.put(b"/p/k", b"over tls")
        async with gw.watch(b"/p/", prefix_end(b"/p/"), revision) as stream:
            with trio.fail_after(5):
                response = await stream.__anext__()
        assert response.events[0].kv.value == b"over tls"
    async with EtcdGateway(EtcdSettings(endpoints, ca=tls_files.ca, **FAST)) as no_cert:
        with pytest.raises(EtcdUnavailable):  # the member refuses the handshake without a client certificate
            await no_cert.range(b"/p/k")
    async with EtcdGateway(EtcdSettings(endpoints, **FAST)) as plain:
        with pytest.raises(EtcdUnavailable):
            await plain.range(b"/p/k")
