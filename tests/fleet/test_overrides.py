"""A write to an etcd prefix that a later source would hide is refused, as for a file."""

from __future__ import annotations

from tests.helpers import LineClient, write_json

PREFIX = "/flagsock/overridden"


async def test_a_flag_a_later_file_overrides_is_not_written_to_etcd(etcd, tmp_path, start_agent):
    override = write_json(tmp_path / "override.json", {"flags": {"dark_mode": {"enabled": False}}})
    url = f"etcd://{etcd.endpoints[0]}{PREFIX}"
    running = await start_agent([url, override], write_to=url)
    before = etcd.revision()
    async with await LineClient.connect(running.socket_path) as c:
        answer = await c.request({"op": "set", "flag": "dark_mode", "enabled": True})
        assert answer["ok"] is False and answer["error"]["code"] == "INVALID_FLAG", answer
        assert "override.json" in answer["error"]["message"]
        assert etcd.revision() == before  # nothing was written
        other = await c.request({"op": "set", "flag": "not_overridden", "enabled": True})
        assert other["ok"] is True, other
    assert etcd.revision() > before
