"""The HTTP/1.1 core on real sockets: keep-alive, pipelining, routing errors, every limit, and
malformed requests, each answered with a 4xx or a close while other clients are served."""

from __future__ import annotations

import socket

import pytest
import trio

from agent.frontends.http.limits import ConnectionLimit, HttpLimits

from agent.frontends.http.server import HttpServer

from agent.frontends.http.routing import Response, Router

from agent.frontends.http.address import bind_tcp

from .rawhttp import RawHttp, encode

GET_HEALTH = encode("GET", "/healthz")


@pytest.fixture(params=["tcp", "unix"])
def transport(request):
    return request.param


async def connect(served, transport: str = "tcp") -> RawHttp:
    return await (RawHttp.tcp(served.port) if transport == "tcp" else RawHttp.unix(served.unix_path))


async def test_keep_alive_answers_many_requests_on_one_connection(http_server, transport):
    served = await http_server()
    async with await connect(served, transport) as client:
        for _ in range(5):
            answer = await client.request("GET", "/healthz")
            assert answer.status == 200
            assert answer.json() == {"status": "serving", "revision": 0}
            assert answer.headers["content-type"] == "application/json"
            assert "connection" not in answer.headers
    assert served.server.counts["connections"] + served.unix_server.counts["connections"] == 1


async def test_pipelined_requests_are_answered_in_order(http_server, transport):
    served = await http_server()
    async with await connect(served, transport) as client:
        await client.send(GET_HEALTH + encode("GET", "/nowhere") + encode("GET", "/readyz") + GET_HEALTH)
        statuses = [(await client.response()).status for _ in range(4)]
    # /readyz of a store without sources: every (no) source is loaded, so ready.
    assert statuses == [200, 404, 200, 200]


async def test_unknown_path_is_404_with_a_json_body(http_server):
    served = await http_server()
    async with await connect(served) as client:
        answer = await client.request("GET", "/ofrep/v2/whatever")
        assert answer.status == 404
        assert answer.json()["errorCode"] == "NOT_FOUND"
        assert "/ofrep/v2/whatever" in answer.json()["errorDetails"]
        assert (await client.request("GET", "/healthz")).status == 200  # still usable


async def test_wrong_method_is_405_naming_the_allowed_ones(http_server):
    served = await http_server()
    async with await connect(served) as client:
        answer = await client.request("DELETE", "/ofrep/v1/evaluate/flags")
        assert answer.status == 405
        assert answer.headers["allow"] == "POST"
        assert answer.json()["errorCode"] == "METHOD_NOT_ALLOWED"
        answer = await client.request("GET", "/ofrep/v1/evaluate/flags/some-flag")
        assert answer.status == 405


async def test_head_gets_the_headers_of_get_without_a_body(http_server):
    served = await http_server()
    async with await connect(served) as client:
        answer = await client.request("HEAD", "/healthz")
        assert answer.status == 200 and answer.body == b""
        assert int(answer.headers["content-length"]) > 0
        assert (await client.request("GET", "/healthz")).status == 200


async def test_http_1_0_is_answered_then_closed(http_server):
    served = await http_server()
    async with await connect(served) as client:
        await client.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = await client.response()
        assert answer.status == 200
        assert await client.closed()


async def test_expect_100_continue_gets_100_then_the_answer(http_server):
    served = await http_server()
    async with await connect(served) as client:
        await client.send(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                          b"Expect: 100-continue\r\n\r\n")
        assert (await client.response()).status == 100
        await client.send(b"{}")
        assert (await client.response()).status == 200


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",                                        # bad request line
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",  # bad header line
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n\r\n",                          # HTTP/1.1 without Host
    b"GET /healthz HTTP/7.0\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # a TLS hello
])
async def test_malformed_request_gets_4xx_and_a_close(http_server, garbage, transport):
    served = await http_server()
    async with await connect(served, transport) as client:
        await client.send(garbage)
        answer = await client.response()
        assert answer is not None and (400 <= answer.status < 500 or answer.status in (501, 505)), answer
        assert answer.headers["connection"] == "close"
        assert answer.json()["errorCode"] in ("BAD_REQUEST", "NOT_IMPLEMENTED", "HTTP_VERSION_NOT_SUPPORTED")
        assert await client.closed()
    async with await connect(served, transport) as other:  # the server is unharmed
        assert (await other.request("GET", "/healthz")).status == 200


async def test_chunked_garbage_gets_400(http_server):
    served = await http_server()
    async with await connect(served) as client:
        await client.send(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"zz-not-hex\r\nhello\r\n0\r\n\r\n")
        answer = await client.response()
        assert answer.status == 400
        assert "malformed" in answer.json()["errorDetails"]
        assert await client.closed()


async def test_bad_percent_encoding_in_the_flag_key_is_400(http_server):
    served = await http_server()
    async with await connect(served) as client:
        answer = await client.request("POST", "/ofrep/v1/evaluate/flags/%ff%fe", b"{}")
        assert answer.status == 400
        assert (await client.request("GET", "/healthz")).status == 200


@pytest.mark.parametrize("limit", [1024, 8192])
async def test_header_bytes_past_the_limit_get_431(http_server, limit, transport):
    served = await http_server(limits=HttpLimits(max_header_bytes=limit))
    async with await connect(served, transport) as client:
        answer = await client.request("GET", "/healthz", headers={"X-Fill": "a" * (limit // 2)})
        assert answer.status == 200  # under the limit
        await client.send(encode("GET", "/healthz", headers={"X-Fill": "a" * (limit + 10)}))
        answer = await client.response()
        assert answer.status == 431
        assert str(limit) in answer.json()["errorDetails"]
        assert await client.closed()


async def test_header_flood_without_end_gets_431(http_server):
    served = await http_server(limits=HttpLimits(max_header_bytes=4096))
    async with await connect(served) as client:
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for i in range(100):
            await client.send(b"X-%d: %s\r\n" % (i, b"b" * 100))
        answer = await client.response()
        assert answer.status == 431


@pytest.mark.parametrize("limit", [100, 4096])
async def test_body_past_the_limit_gets_413(http_server, limit):
    served = await http_server(limits=HttpLimits(max_body_bytes=limit))
    body = b'{"context": {"pad": "' + b"x" * limit + b'"}}'
    async with await connect(served) as client:
        await client.send(encode("POST", "/ofrep/v1/evaluate/flags", body))
        answer = await client.response()
        assert answer.status == 413
        assert answer.json()["errorCode"] == "BODY_TOO_LARGE"
        assert await client.closed()


async def test_declared_huge_body_gets_413_before_it_is_sent(http_server):
    served = await http_server(limits=HttpLimits(max_body_bytes=1000))
    async with await connect(served) as client:
        await client.send(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        answer = await client.response()
        assert answer.status == 413 and "10000000000" in answer.json()["errorDetails"]


async def test_chunked_body_past_the_limit_gets_413(http_server):
    served = await http_server(limits=HttpLimits(max_body_bytes=1000))
    async with await connect(served) as client:
        await client.send(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            await client.send(b"1f4\r\n" + b"y" * 500 + b"\r\n")
        answer = await client.response()
        assert answer.status == 413


async def test_chunked_body_within_the_limit_is_read(http_server):
    served = await http_server()
    async with await connect(served) as client:
        await client.send(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\n{\"con\r\n9\r\ntext\": {}\r\n1\r\n}\r\n0\r\n\r\n")
        answer = await client.response()
        assert answer.status == 200 and answer.json()["flags"] == []


async def test_slow_request_head_gets_408(http_server, autojump_clock):
    served = await http_server(limits=HttpLimits(header_timeout=5))
    async with await connect(served) as client:
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        start = trio.current_time()
        answer = await client.response(timeout=60)
        assert answer.status == 408
        assert 5 <= trio.current_time() - start < 6
        assert await client.closed(timeout=60)


async def test_a_connection_that_says_nothing_is_closed_after_the_header_timeout(http_server, autojump_clock):
    served = await http_server(limits=HttpLimits(header_timeout=5))
    async with await connect(served) as client:
        start = trio.current_time()
        assert await client.response(timeout=60) is None  # closed without a word
        assert 5 <= trio.current_time() - start < 6


async def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(http_server, autojump_clock):
    served = await http_server(limits=HttpLimits(idle_timeout=30, header_timeout=5))
    async with await connect(served) as client:
        assert (await client.request("GET", "/healthz")).status == 200
        start = trio.current_time()
        assert await client.response(timeout=120) is None
        assert 30 <= trio.current_time() - start < 31


async def test_slow_body_gets_408(http_server, autojump_clock):
    served = await http_server(limits=HttpLimits(body_timeout=7))
    async with await connect(served) as client:
        await client.send(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"con")
        answer = await client.response(timeout=60)
        assert answer.status == 408 and "body" in answer.json()["errorDetails"]


async def test_stuck_and_slow_clients_hold_nobody_up(http_server, autojump_clock):
    served = await http_server(limits=HttpLimits(header_timeout=10, send_timeout=10))
    stuck = await connect(served)
    await stuck.send(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\n")
    # A client that pipelines and never reads: the server's writes back up.
    hog = await connect(served)
    hog_sock = hog.stream.socket
    hog_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    requests = encode("POST", "/ofrep/v1/evaluate/flags", b"{}") * 2000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hog.send, requests)
        async with await connect(served) as client:
            for _ in range(20):
                assert (await client.request("GET", "/healthz")).status == 200
        nursery.cancel_scope.cancel()
    assert await stuck.closed(timeout=60)
    await stuck.aclose()
    await hog.aclose()


async def test_connections_past_the_cap_get_503(http_server):
    cap = ConnectionLimit(2)
    served = await http_server(connections=cap)
    first, second = await connect(served), await connect(served)
    assert (await first.request("GET", "/healthz")).status == 200
    assert (await second.request("GET", "/healthz")).status == 200
    async with await connect(served) as third:
        answer = await third.response()
        assert answer.status == 503 and answer.json()["errorCode"] == "BUSY"
        assert answer.headers["retry-after"] == "1"
        assert await third.closed()
    await first.aclose()
    with trio.fail_after(5):
        while cap.open > 1:
            await trio.sleep(0.01)
    async with await connect(served) as again:
        assert (await again.request("GET", "/healthz")).status == 200
    await second.aclose()


async def test_cap_is_asked_with_the_peer_and_released_on_close(http_server):
    class Recording:
        def __init__(self) -> None:
            self.peers: list = []
            self.released = 0

        def try_acquire(self, peer) -> bool:
            self.peers.append(peer)
            return True

        def release(self) -> None:
            self.released += 1

    cap = Recording()
    served = await http_server(connections=cap)
    async with await RawHttp.unix(served.unix_path) as client:
        assert (await client.request("GET", "/healthz")).status == 200
    async with await RawHttp.tcp(served.port) as client:
        assert (await client.request("GET", "/healthz")).status == 200
    with trio.fail_after(5):
        while cap.released < 2:
            await trio.sleep(0.01)
    import os
    assert cap.peers[0].uid == os.geteuid()  # Unix: the kernel's credentials
    assert cap.peers[1].host == "127.0.0.1"


async def test_a_failing_handler_is_500_and_the_connection_lives_on(nursery):
    def boom(request):
        raise RuntimeError("bug")

    router = Router()
    router.add("GET", "/boom", boom)
    router.add("GET", "/ok", lambda request: Response(200, b"{}"))
    sock = bind_tcp("127.0.0.1", 0)
    server = HttpServer(router, sock)
    await nursery.start(server.serve)
    try:
        async with await RawHttp.tcp(sock.getsockname()[1]) as client:
            answer = await client.request("GET", "/boom")
            assert answer.status == 500 and answer.json()["errorCode"] == "GENERAL"
            assert (await client.request("GET", "/ok")).status == 200
    finally:
        server.shutdown()
        sock.close()


async def test_shutdown_closes_idle_connections_and_stops_accepting(http_server):
    served = await http_server()
    client = await connect(served)
    assert (await client.request("GET", "/healthz")).status == 200
    served.server.shutdown()
    assert await client.closed()
    with trio.fail_after(5):
        await served.server.wait_connections_closed()
    await client.aclose()
