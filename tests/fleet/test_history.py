"""The change history of agents sharing one etcd: the agent a write went through names its peer;
every other agent names the etcd source."""

from __future__ import annotations

import json
import os
import pwd

import trio

from tests.fleet.test_agents import ON, OFF, PREFIX, agent_args, wait_revision
from tests.helpers import LineClient
from tests.process import AgentProcess


async def test_a_write_through_one_agent_is_in_every_agents_history(etcd, sock_dir, tmp_path):
    etcd.put(f"{PREFIX}/dark_mode", json.dumps(ON))
    url = f"etcd://{','.join(etcd.endpoints)}{PREFIX}"
    with AgentProcess([*agent_args(etcd.endpoints, sock_dir, "a"), "--state-dir", str(tmp_path / "a")]) as a, \
            AgentProcess([*agent_args(etcd.endpoints, sock_dir, "b"), "--state-dir", str(tmp_path / "b")]) as b:
        async with await LineClient.connect(a.socket_path) as ca, await LineClient.connect(b.socket_path) as cb, \
                await LineClient.connect(a.socket_path) as watch_a:
            await cb.result({"op": "subscribe"})
            await watch_a.result({"op": "subscribe"})
            with trio.fail_after(10):
                while "dark_mode" not in (await ca.result({"op": "evaluate_all"}))["flags"]:
                    await watch_a.receive()
            revision = (await ca.result({"op": "set", "flag": "dark_mode", "definition": OFF}))["revision"]
            await wait_revision(cb, revision)
            through_a = (await ca.result({"op": "history", "flag": "dark_mode"}))["changes"][0]
        async with await LineClient.connect(b.socket_path) as cb:
            elsewhere = (await cb.result({"op": "history", "flag": "dark_mode"}))["changes"][0]
    assert through_a["revision"] == elsewhere["revision"] == revision
    assert through_a["by"]["uid"] == os.getuid() and through_a["by"]["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert through_a["by"]["pid"] == os.getpid()
    assert elsewhere["by"] == {"source": url}
    for entry in (through_a, elsewhere):
        change = entry["flags"]["dark_mode"]
        assert change["change"] == "updated" and change["before"] == ON and change["after"] == OFF
