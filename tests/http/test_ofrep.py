"""OFREP over a real agent: the spec's bodies and statuses, value omission, ETag and 304, the
selector, on TCP and on the Unix socket."""

from __future__ import annotations

import json

import pytest

from tests.helpers import write_json

from .flags import CLOCK_FLAG, flags
from .rawhttp import RawHttp, ofrep_body

SINGLE = "/ofrep/v1/evaluate/flags/"
BULK = "/ofrep/v1/evaluate/flags"


@pytest.fixture
async def agent(http_agent, tmp_path):
    path = write_json(tmp_path / "flags.flagd.json", flags())
    served = await http_agent([path])
    served.flag_file = path
    return served


@pytest.fixture(params=["tcp", "unix"])
async def client(request, agent):
    raw = await (RawHttp.tcp(agent.port) if request.param == "tcp" else RawHttp.unix(agent.unix_path))
    async with raw:
        yield raw


async def evaluate(client, key: str, context=None, headers=None):
    return await client.request("POST", SINGLE + key, ofrep_body(context), headers)


@pytest.mark.parametrize("key, value, variant, reason", [
    ("bool-flag", True, "on", "STATIC"),
    ("string-flag", "red", "red", "DEFAULT"),  # targeted, no rule matched
    ("int-flag", 2, "two", "STATIC"),
    ("float-flag", 3.14, "pi", "STATIC"),
    ("object-flag", {"x": 1, "y": [1, 2]}, "a", "STATIC"),
])
async def test_single_flag_success_body(client, key, value, variant, reason):
    answer = await evaluate(client, key, {"targetingKey": "user-1"})
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"key": key, "value": value, "reason": reason, "variant": variant,
                             "metadata": {"owner": "tests"}}


async def test_targeting_match_reads_the_context(client):
    answer = await evaluate(client, "string-flag", {"targetingKey": "u", "email": "a@example.com"})
    assert answer.json()["value"] == "blue" and answer.json()["reason"] == "TARGETING_MATCH"
    answer = await evaluate(client, "string-flag", {"targetingKey": "u", "email": "a@other.org"})
    assert answer.json()["value"] == "red" and answer.json()["reason"] == "DEFAULT"


@pytest.mark.parametrize("key, reason", [("disabled-flag", "DISABLED"), ("no-default-flag", "DEFAULT")])
async def test_flag_without_a_value_omits_value(client, key, reason):
    body = (await evaluate(client, key)).json()
    assert "value" not in body  # ADR-0006: the provider uses its code default
    assert body == {"key": key, "reason": reason, "variant": None, "metadata": {"owner": "tests"}}


async def test_missing_flag_is_404_flag_not_found(client):
    answer = await evaluate(client, "no-such-flag")
    assert answer.status == 404
    body = answer.json()
    assert body["key"] == "no-such-flag" and body["errorCode"] == "FLAG_NOT_FOUND"
    assert "no-such-flag" in body["errorDetails"]


async def test_flag_whose_rule_names_an_unknown_variant_is_400_general(client):
    answer = await evaluate(client, "broken-flag")
    assert answer.status == 400
    assert answer.json()["errorCode"] == "GENERAL" and "nonexistent" in answer.json()["errorDetails"]


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"context": "user-1"}', "\"context\" must be an object"),
    (b'{"context": [1]}', "\"context\" must be an object"),
])
async def test_bad_body_is_400_invalid_context(client, body, fragment):
    answer = await client.request("POST", SINGLE + "bool-flag", body)
    assert answer.status == 400
    assert answer.json()["errorCode"] == "INVALID_CONTEXT" and fragment in answer.json()["errorDetails"]
    answer = await client.request("POST", BULK, body)
    assert answer.status == 400
    assert answer.json()["errorCode"] == "INVALID_CONTEXT" and "key" not in answer.json()


@pytest.mark.parametrize("body", [b"", b"{}", b'{"context": null}'])
async def test_no_context_is_an_empty_context(client, body):
    answer = await client.request("POST", SINGLE + "bool-flag", body)
    assert answer.status == 200 and answer.json()["value"] is True


async def test_flag_key_is_percent_decoded(agent, client):
    write_json(agent.flag_file, flags(**{"odd key/ü": {"state": "ENABLED", "variants": {"a": "x"},
                                                       "defaultVariant": "a"}}))
    await agent.running.service.reloader.reload("test")  # served once this returns (or the watcher was first)
    answer = await evaluate(client, "odd%20key%2F%C3%BC")
    assert answer.status == 200 and answer.json()["key"] == "odd key/ü"


async def test_single_evaluation_is_counted_in_stats(client, agent):
    await evaluate(client, "bool-flag")
    await evaluate(client, "bool-flag")
    assert agent.running.service.stats.evaluation_totals()["bool-flag"] == 2


async def test_bulk_body_lists_every_flag_and_the_event_stream(client):
    answer = await client.request("POST", BULK, ofrep_body({"targetingKey": "u", "email": "a@example.com"}))
    assert answer.status == 200
    body = answer.json()
    by_key = {item["key"]: item for item in body["flags"]}
    assert set(by_key) == set(flags()["flags"])
    assert by_key["string-flag"] == {"key": "string-flag", "value": "blue", "reason": "TARGETING_MATCH",
                                     "variant": "blue", "metadata": {"owner": "tests"}}
    assert "value" not in by_key["disabled-flag"] and by_key["disabled-flag"]["reason"] == "DISABLED"
    assert by_key["broken-flag"]["errorCode"] == "GENERAL" and "errorDetails" in by_key["broken-flag"]
    assert body["eventStreams"] == [{"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/events"},
                                     "inactivityDelaySec": 120}]
    assert body["metadata"]["revision"] >= 1
    etag = answer.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith('W/')


async def test_bulk_304_when_the_etag_matches_and_200_when_the_context_differs(client):
    context = {"targetingKey": "u", "plan": "pro", "nested": {"b": 1, "a": 2}}
    first = await client.request("POST", BULK, ofrep_body(context))
    etag = first.headers["etag"]
    again = await client.request("POST", BULK, ofrep_body(context), {"If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag
    assert "content-length" not in again.headers and "content-type" not in again.headers
    # The same context with its keys in another order is the same answer.
    reordered = json.dumps({"context": {"nested": {"a": 2, "b": 1}, "plan": "pro", "targetingKey": "u"}}).encode()
    assert (await client.request("POST", BULK, reordered, {"If-None-Match": etag})).status == 304
    # A list of tags, a weak form and * match too; another tag does not.
    assert (await client.request("POST", BULK, ofrep_body(context), {"If-None-Match": f'"x", W/{etag}'})).status == 304
    assert (await client.request("POST", BULK, ofrep_body(context), {"If-None-Match": "*"})).status == 304
    assert (await client.request("POST", BULK, ofrep_body(context), {"If-None-Match": '"other"'})).status == 200
    other = await client.request("POST", BULK, ofrep_body({**context, "plan": "free"}), {"If-None-Match": etag})
    assert other.status == 200 and other.headers["etag"] != etag
    # The connection is still in step after 304s (no stray body bytes).
    assert (await evaluate(client, "bool-flag")).status == 200


async def test_bulk_etag_changes_when_the_flags_change(agent, client):
    first = await client.request("POST", BULK, ofrep_body())
    write_json(agent.flag_file, flags(int_flag={"state": "ENABLED", "variants": {"one": 1}, "defaultVariant": "one"}))
    await agent.running.service.reloader.reload("test")  # served once this returns (or the watcher was first)
    second = await client.request("POST", BULK, ofrep_body(), {"If-None-Match": first.headers["etag"]})
    assert second.status == 200 and second.headers["etag"] != first.headers["etag"]
    assert {i["key"]: i for i in second.json()["flags"]}["int-flag"]["value"] == 1


async def test_bulk_etag_covers_the_answer_when_a_rule_reads_the_clock(agent, client):
    write_json(agent.flag_file, flags(clock_flag=CLOCK_FLAG))
    await agent.running.service.reloader.reload("test")
    first = await client.request("POST", BULK, ofrep_body())
    assert ".t" in first.headers["etag"]  # a digest of the answer, not of the inputs alone
    again = await client.request("POST", BULK, ofrep_body(), {"If-None-Match": first.headers["etag"]})
    assert again.status == 304


async def test_selector_restricts_to_the_flag_set(client):
    headers = {"Flagd-Selector": "flagSetId=team-a"}
    body = (await client.request("POST", BULK, ofrep_body(), headers)).json()
    assert [item["key"] for item in body["flags"]] == ["team-flag"]
    assert body["eventStreams"][0]["endpoint"]["requestUri"] == "/ofrep/v1/events?flagSetId=team-a"
    assert (await evaluate(client, "team-flag", headers=headers)).status == 200
    assert (await evaluate(client, "bool-flag", headers=headers)).status == 404
    plain = await client.request("POST", BULK, ofrep_body())
    with_set = await client.request("POST", BULK, ofrep_body(), headers)
    assert plain.headers["etag"] != with_set.headers["etag"]


async def test_malformed_selector_is_400(client):
    answer = await evaluate(client, "bool-flag", headers={"Flagd-Selector": "team-a"})
    assert answer.status == 400 and "flagSetId=ID" in answer.json()["errorDetails"]


async def test_sse_query_metadata_on_the_bulk_path_is_accepted(client):
    answer = await client.request("POST", BULK + "?flagConfigEtag=%22abc%22&flagConfigLastModified=1771622898",
                                  ofrep_body())
    assert answer.status == 200


async def test_host_context_values_apply_and_the_request_wins(http_agent, tmp_path):
    path = write_json(tmp_path / "flags.flagd.json", flags())
    served = await http_agent([path], context_values=("email=ops@example.com",))
    async with await RawHttp.tcp(served.port) as client:
        answer = await evaluate(client, "string-flag", {"targetingKey": "u"})
        assert answer.json()["value"] == "blue"  # the host's email matched the rule
        answer = await evaluate(client, "string-flag", {"targetingKey": "u", "email": "a@other.org"})
        assert answer.json()["value"] == "red"
        bulk = await client.request("POST", BULK, ofrep_body({"targetingKey": "u"}))
        assert {i["key"]: i for i in bulk.json()["flags"]}["string-flag"]["value"] == "blue"
