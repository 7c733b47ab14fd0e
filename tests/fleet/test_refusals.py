"""How etcd's answers are read, without an etcd: refusals by what they mean for a retry, and
watch lines by what they carry."""

from __future__ import annotations

import pytest

from agent.sources.etcd.errors import (
    AuthError,
    BadAnswer,
    Compacted,
    EndpointDown,
    EtcdRequestError,
    NoLeader,
    OutcomeUnknown,
    RequestTooLarge,
    WatchCanceled,
)
from agent.sources.etcd.refusals import TokenRejected, classify_refusal
from agent.sources.etcd.watch import parse_line

EP = "10.0.0.1:2379"


def refusal(code: int, message: str) -> dict:
    return {"error": message, "code": code, "message": message}


@pytest.mark.parametrize(("status", "body", "write", "kind"), [
    (503, refusal(14, "etcdserver: no leader"), True, NoLeader),
    (401, refusal(16, "etcdserver: invalid auth token"), False, TokenRejected),
    (400, refusal(3, "etcdserver: user name is empty"), False, TokenRejected),
    (400, refusal(3, "etcdserver: authentication failed, invalid user ID or password"), False, AuthError),
    (403, refusal(7, "etcdserver: permission denied"), True, AuthError),
    (400, refusal(3, "etcdserver: request is too large"), True, RequestTooLarge),
    (429, refusal(8, "etcdserver: too many requests"), True, EndpointDown),
    (503, refusal(14, "etcdserver: request timed out"), True, OutcomeUnknown),
    (503, refusal(14, "etcdserver: request timed out"), False, EndpointDown),
    (503, refusal(14, 'connection error: desc = "transport: authentication handshake failed"'), True, EndpointDown),
    (502, None, True, OutcomeUnknown),
    (400, refusal(11, "etcdserver: mvcc: required revision has been compacted"), False, EtcdRequestError),
])
def test_a_refusal_says_whether_another_endpoint_may_be_asked(status, body, write, kind):
    error = classify_refusal(EP, status, body, write=write)
    assert type(error) is kind
    assert EP in str(error)


def test_watch_lines_carry_events_progress_and_their_ends():
    created = '{"result":{"header":{"revision":"5"},"created":true}}'
    assert parse_line(EP, created, 3) is None
    events = ('{"result":{"header":{"revision":"7"},"events":[{"kv":{"key":"L3AvYQ==","value":"MQ==",'
              '"mod_revision":"6"}},{"type":"DELETE","kv":{"key":"L3AvYQ==","mod_revision":"7"}}]}}')
    response = parse_line(EP, events, 3)
    assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in response.events] == [
        ("PUT", b"/p/a", b"1", 6), ("DELETE", b"/p/a", b"", 7)]
    progress = parse_line(EP, '{"result":{"header":{"revision":"9"}}}', 3)
    assert progress.progress and progress.revision == 9
    with pytest.raises(Compacted) as caught:
        parse_line(EP, '{"result":{"header":{},"canceled":true,"compact_revision":"4"}}', 3)
    assert (caught.value.requested, caught.value.compact_revision) == (3, 4)
    with pytest.raises(AuthError):
        parse_line(EP, '{"result":{"canceled":true,"cancel_reason":"rpc error: code = PermissionDenied '
                       'desc = etcdserver: permission denied"}}', 3)
    with pytest.raises(WatchCanceled, match="something else"):
        parse_line(EP, '{"result":{"canceled":true,"cancel_reason":"something else"}}', 3)
    with pytest.raises(NoLeader):
        parse_line(EP, '{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}', 3)
    with pytest.raises(BadAnswer, match="unreadable watch line"):
        parse_line(EP, "<html>", 3)
