"""``--context-value KEY=VALUE`` (flagd's -X): added under every evaluation context, the request's
own keys winning, so a rule on the host's region or machine id works for every caller."""

from __future__ import annotations

import pytest

from tests.helpers import LineClient, write_json
from tests.process import flagsock

REGIONAL = {"flags": {"eu-only": {
    "state": "ENABLED", "variants": {"yes": True, "no": False}, "defaultVariant": "no",
    "targeting": {"if": [{"==": [{"var": "region"}, "eu-west"]}, "yes", "no"]},
}}}


async def test_host_context_is_under_every_request_and_the_request_wins(start_agent, tmp_path):
    path = write_json(tmp_path / "flags.json", REGIONAL)
    running = await start_agent([path], context_values=("region=eu-west", "host=web-1"))
    async with await LineClient.connect(running.socket_path) as c:
        plain = await c.result({"op": "evaluate", "flag": "eu-only"})
        assert plain["value"] is True and plain["reason"] == "TARGETING_MATCH"
        ours = await c.result({"op": "evaluate", "flag": "eu-only", "context": {"region": "us-east"}})
        assert ours["value"] is False
        with_user = await c.result({"op": "evaluate", "flag": "eu-only", "context": {"targetingKey": "u1"}})
        assert with_user["value"] is True
        every = await c.result({"op": "evaluate_all", "context": {"targetingKey": "u1"}})
        assert every["flags"]["eu-only"]["value"] is True


async def test_without_context_values_nothing_is_added(start_agent, tmp_path):
    path = write_json(tmp_path / "flags.json", REGIONAL)
    running = await start_agent([path])
    async with await LineClient.connect(running.socket_path) as c:
        assert (await c.result({"op": "evaluate", "flag": "eu-only"}))["value"] is False


@pytest.mark.parametrize("value", ["noequals", "=x", " =x"])
def test_a_context_value_without_a_key_is_refused_at_start(value, tmp_path, sock_dir):
    path = write_json(tmp_path / "flags.json", REGIONAL)
    out = flagsock("serve", "--flags", str(path), "--socket", str(sock_dir / "s.sock"), "--context-value", value)
    assert out.returncode == 2 and "context-value must be KEY=VALUE" in out.stderr and "Traceback" not in out.stderr
