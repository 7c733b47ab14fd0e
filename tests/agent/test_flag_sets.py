"""flagd's flag sets through a real agent: ``metadata.flagSetId`` (a flag's own wins over its
file's) puts a flag in a set, the same key may live in two sets, and a ``selector`` of
``flagSetId=ID`` restricts evaluate, evaluate_all and subscribe to one set."""

from __future__ import annotations

import pytest

from tests.helpers import LineClient, write_json


def _flag(value: str, **metadata: str) -> dict:
    flag = {"state": "ENABLED", "variants": {"v": value}, "defaultVariant": "v"}
    if metadata:
        flag["metadata"] = metadata
    return flag


@pytest.fixture
def two_sets(tmp_path):
    web = write_json(tmp_path / "web.json", {
        "metadata": {"flagSetId": "web"},
        "flags": {
            "banner": _flag("web banner"),
            "checkout": _flag("web checkout"),
            "own-set": _flag("mobile's, by its own metadata", flagSetId="mobile"),
        },
    })
    mobile = write_json(tmp_path / "mobile.json", {
        "metadata": {"flagSetId": "mobile"},
        "flags": {"banner": _flag("mobile banner"), "no-set-here": _flag("x", flagSetId="")},
    })
    plain = write_json(tmp_path / "plain.json", {"flags": {"unset": _flag("in no set")}})
    return web, mobile, plain


async def _value(c: LineClient, flag: str, **extra) -> object:
    answer = await c.request({"op": "evaluate", "flag": flag, **extra})
    return answer["result"]["value"] if answer["ok"] else answer["error"]["code"]


async def test_a_selector_sees_its_set_and_no_selector_sees_every_flag(start_agent, two_sets):
    running = await start_agent(list(two_sets))
    async with await LineClient.connect(running.socket_path) as c:
        # Without a selector: every flag, the later file winning on a key.
        assert await _value(c, "banner") == "mobile banner"
        assert await _value(c, "unset") == "in no set"
        # With one: that set's definition of the key, and nothing outside the set.
        assert await _value(c, "banner", selector="flagSetId=web") == "web banner"
        assert await _value(c, "banner", selector="flagSetId=mobile") == "mobile banner"
        assert await _value(c, "checkout", selector="flagSetId=mobile") == "FLAG_NOT_FOUND"
        assert await _value(c, "unset", selector="flagSetId=web") == "FLAG_NOT_FOUND"
        # A flag's own flagSetId wins over its file's.
        assert await _value(c, "own-set", selector="flagSetId=mobile") == "mobile's, by its own metadata"
        assert await _value(c, "own-set", selector="flagSetId=web") == "FLAG_NOT_FOUND"
        assert await _value(c, "banner", selector="flagSetId=nobody") == "FLAG_NOT_FOUND"

        web = await c.result({"op": "evaluate_all", "selector": "flagSetId=web"})
        assert {k: v["value"] for k, v in web["flags"].items()} == {"banner": "web banner", "checkout": "web checkout"}
        mobile = await c.result({"op": "evaluate_all", "selector": "flagSetId=mobile"})
        assert set(mobile["flags"]) == {"banner", "own-set"}
        everything = await c.result({"op": "evaluate_all"})
        assert set(everything["flags"]) == {"banner", "checkout", "own-set", "no-set-here", "unset"}


@pytest.mark.parametrize("selector", ["web", "flagSetId=", "flagSetId", "source=web.json", "=web", ""])
async def test_a_selector_that_is_not_understood_is_a_bad_request_naming_it(start_agent, two_sets, selector):
    running = await start_agent(list(two_sets))
    async with await LineClient.connect(running.socket_path) as c:
        for op in ({"op": "evaluate", "flag": "banner"}, {"op": "evaluate_all"}, {"op": "subscribe"}):
            answer = await c.request({**op, "selector": selector})
            assert answer["ok"] is False and answer["error"]["code"] == "BAD_REQUEST", answer
            assert "flagSetId=ID" in answer["error"]["message"]
        answer = await c.request({"op": "evaluate", "flag": "banner", "selector": 7})
        assert answer["error"]["code"] == "BAD_REQUEST" and "selector" in answer["error"]["message"]
        assert await _value(c, "banner") == "mobile banner"  # the connection still serves


async def test_a_subscriber_with_a_selector_hears_only_its_sets_changes(start_agent, two_sets):
    web, mobile, _ = two_sets
    running = await start_agent(list(two_sets))
    async with await LineClient.connect(running.socket_path) as web_sub, \
            await LineClient.connect(running.socket_path) as all_sub:
        await web_sub.result({"op": "subscribe", "selector": "flagSetId=web"})
        await all_sub.result({"op": "subscribe"})
        # The mobile set's banner changes: the merged view changes (mobile wins), web's set does not.
        write_json(mobile, {"metadata": {"flagSetId": "mobile"},
                            "flags": {"banner": _flag("mobile banner 2"), "no-set-here": _flag("x", flagSetId="")}})
        event = await all_sub.receive()
        assert event["event"] == "changed" and event["flags"] == {"banner": "updated"}
        # Now web's set changes: the web subscriber hears exactly that, and nothing before it.
        write_json(web, {"metadata": {"flagSetId": "web"},
                         "flags": {"banner": _flag("web banner 2"), "own-set": _flag("m", flagSetId="mobile")}})
        event = await web_sub.receive()
        assert event["event"] == "changed", event
        assert event["flags"] == {"banner": "updated", "checkout": "removed"}, event
        assert event["revision"] == (await all_sub.receive())["revision"]
