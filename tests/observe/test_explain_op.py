"""The ``explain`` op over the socket, and ``flagsock explain`` as a person runs it."""

from __future__ import annotations

import json

import pytest

from tests.helpers import LineClient, write_json
from tests.process import AgentProcess, flagsock

FLAGS = {"flags": {
    "plan-banner": {
        "state": "ENABLED", "variants": {"gold": "Gold!", "plain": "Hi", "none": "-"}, "defaultVariant": "none",
        "targeting": {"if": [{"ends_with": [{"var": "email"}, "@corp.com"]}, "gold",
                             {"fractional": [["gold", 10], ["plain", 90]]}]},
    },
    "broken-rule": {"state": "ENABLED", "variants": {"a": "a"}, "defaultVariant": "a",
                    "targeting": {"if": [{"var": "x"}, "a", "nope"]}},
}}


@pytest.fixture
def flag_file(tmp_path):
    return write_json(tmp_path / "flags.json", FLAGS)


async def test_explain_answers_what_evaluate_does_plus_the_trace(start_agent, flag_file):
    running = await start_agent([flag_file])
    async with await LineClient.connect(running.socket_path) as client:
        for context in ({"email": "a@corp.com"}, {"targetingKey": "u-7"}, {}, {"targetingKey": "u-8", "email": 3}):
            plain = await client.result({"op": "evaluate", "flag": "plan-banner", "context": context})
            answer = await client.request({"op": "explain", "id": 9, "flag": "plan-banner", "context": context})
            assert answer["id"] == 9 and answer["ok"] is True
            result = answer["result"]
            trace = result.pop("trace")
            assert result == plain
            assert trace[0]["op"] == "flag" and trace[-1]["op"] == "result"
            assert trace[-1]["variant"] == plain["variant"]
            assert any(step["op"] == "ends_with" for step in trace)
        stats = await client.result({"op": "stats"})
        assert stats["requests"]["explain"] == 4
        assert stats["evaluations"] == {"plan-banner": 4}  # explaining is not asking for the flag


async def test_an_evaluation_error_is_evaluates_error_with_the_trace(start_agent, flag_file):
    running = await start_agent([flag_file])
    async with await LineClient.connect(running.socket_path) as client:
        plain = await client.request({"op": "evaluate", "flag": "broken-rule", "context": {"x": False}})
        answer = await client.request({"op": "explain", "flag": "broken-rule", "context": {"x": False}})
        assert answer["ok"] is False
        error = answer["error"]
        assert (error["code"], error["message"]) == (plain["error"]["code"], plain["error"]["message"]) == (
            "GENERAL", error["message"])
        assert error["trace"][-1]["chosen"] == "nope"
        missing = await client.request({"op": "explain", "flag": "nope"})
        assert missing["error"]["code"] == "FLAG_NOT_FOUND" and missing["error"]["trace"][0]["found"] is False
        bad = await client.request({"op": "explain", "flag": "plan-banner", "colour": 1})
        assert bad["error"]["code"] == "BAD_REQUEST" and "colour" in bad["error"]["message"]
        assert "trace" not in bad["error"]
        bad = await client.request({"op": "explain"})
        assert bad["error"]["code"] == "BAD_REQUEST" and "\"flag\"" in bad["error"]["message"]


def test_cli_explain_prints_an_indented_tree(flag_file, sock_dir):
    sock = str(sock_dir / "explain.sock")
    with AgentProcess(["--flags", str(flag_file), "--socket", sock]):
        out = flagsock("explain", "plan-banner", "--user", "u-7", "--context", '{"email": "b@home.org"}',
                       "--socket", sock)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith("flag plan-banner (flagd, ENABLED) from ")
        assert lines[1] == "targeting, with context keys: email, targetingKey"
        assert lines[2].startswith("  if(false, \"gold\", ") and lines[2].endswith("[else]")
        assert lines[3] == '    ends_with("b@home.org", "@corp.com") -> false'
        assert lines[4] == '      var("email") -> "b@home.org"'
        assert "[bucket " in lines[5] and " of 100 -> " in lines[5] and "gold 0-10, plain 10-100" in lines[5]
        assert lines[-2].startswith("=> variant ")
        assert lines[-1].startswith("value ") and lines[-1].endswith("at revision 1")
        as_json = json.loads(flagsock("explain", "plan-banner", "--json", "--socket", sock).stdout)
        assert as_json["trace"][-1]["op"] == "result"
        failed = flagsock("explain", "broken-rule", "--context", '{"x": false}', "--socket", sock)
        assert failed.returncode == 1
        assert "GENERAL" in failed.stderr and failed.stdout.splitlines()[-1].startswith("=> ")


async def test_explain_takes_a_selector_and_the_host_context(start_agent, tmp_path):
    flag_file = write_json(tmp_path / "sets.json", {"flags": {
        "in-web": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a",
                   "metadata": {"flagSetId": "web"}, "targeting": {"if": [{"==": [{"var": "host"}, "h1"]}, "b", "a"]}},
    }})
    running = await start_agent([flag_file], context_values=("host=h1",))
    async with await LineClient.connect(running.socket_path) as client:
        found = await client.result({"op": "explain", "flag": "in-web", "selector": "flagSetId=web"})
        assert found["variant"] == "b"
        assert any(step.get("op") == "var" and step["result"] == "h1" for step in found["trace"])
        other = await client.request({"op": "explain", "flag": "in-web", "selector": "flagSetId=mobile"})
        assert other["error"]["code"] == "FLAG_NOT_FOUND"
