"""``flagsock publish FILE --to etcd://...`` as CI runs it: a real subprocess against a real etcd,
validated like an agent loads a file, written in one transaction, served by an agent."""

from __future__ import annotations

import base64
import json

from tests.fleet.etcd import b64
from tests.helpers import LineClient
from tests.process import flagsock

PREFIX = "/flagsock/published"

FILE = {
    "metadata": {"team": "web"},
    "$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.com"]}},
    "flags": {
        "banner": {"state": "ENABLED", "variants": {"red": "#c00", "blue": "#00c"}, "defaultVariant": "blue",
                   "targeting": {"if": [{"$ref": "staff"}, "red", None]}},
        "dark_mode": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
    },
}


def keys(etcd) -> dict[str, object]:
    answer = etcd.call("/v3/kv/range", {"key": b64(PREFIX + "/"), "range_end": b64(PREFIX + "0")})
    return {base64.b64decode(kv["key"]).decode()[len(PREFIX) + 1:]: json.loads(base64.b64decode(kv["value"]))
            for kv in answer.get("kvs", [])}


def publish(etcd, path, *extra: str):
    return flagsock("publish", str(path), "--to", f"etcd://{etcd.endpoints[0]}{PREFIX}", *extra)


async def test_a_published_file_is_in_etcd_and_served_by_an_agent(etcd, tmp_path, start_agent):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FILE))
    out = publish(etcd, path)
    assert out.returncode == 0, out.stderr
    assert "2 put, 0 deleted" in out.stdout
    stored = keys(etcd)
    assert stored["banner"] == FILE["flags"]["banner"] and stored["dark_mode"] == FILE["flags"]["dark_mode"]
    assert stored[".meta"] == {"metadata": FILE["metadata"], "$evaluators": FILE["$evaluators"]}

    running = await start_agent([f"etcd://{etcd.endpoints[0]}{PREFIX}"])
    async with await LineClient.connect(running.socket_path) as c:
        red = await c.result({"op": "evaluate", "flag": "banner", "context": {"email": "ann@example.com"}})
        assert red["value"] == "#c00" and red["metadata"]["team"] == "web"

    again = publish(etcd, path)
    assert again.returncode == 0 and "already as in" in again.stdout


async def test_only_changed_flags_are_put_and_prune_deletes_the_rest(etcd, tmp_path):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FILE))
    assert publish(etcd, path).returncode == 0
    smaller = {**FILE, "flags": {"banner": {**FILE["flags"]["banner"], "defaultVariant": "red"}}}
    path.write_text(json.dumps(smaller))
    kept = publish(etcd, path)
    assert kept.returncode == 0 and "1 put, 0 deleted, 0 unchanged" in kept.stdout, kept.stdout
    assert "1 flags in etcd are not in the file (--prune deletes them)" in kept.stdout
    assert "dark_mode" in keys(etcd)
    pruned = publish(etcd, path, "--prune")
    assert pruned.returncode == 0 and "0 put, 1 deleted" in pruned.stdout, pruned.stdout
    assert set(keys(etcd)) == {"banner", ".meta", ".written"}


def test_an_invalid_file_writes_nothing_and_names_every_problem(etcd, tmp_path):
    path = tmp_path / "flags.json"
    bad = {"flags": {"a": {"state": "ENABLED", "variants": {"x": 1, "y": "two"}, "defaultVariant": "z"}}}
    path.write_text(json.dumps(bad))
    before = etcd.revision()
    out = publish(etcd, path)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.startswith(str(path))]
    assert len(lines) >= 2 and any("variants" in line for line in lines) and any("defaultVariant" in line for line in lines)
    assert "nothing was written" in out.stderr
    assert etcd.revision() == before and keys(etcd) == {}


async def test_a_simple_file_is_published_as_the_flagd_flags_that_answer_like_it(etcd, tmp_path, start_agent):
    path = tmp_path / "simple.yaml"
    path.write_text("flags:\n  checkout: {enabled: true, rollout_percentage: 30, allowed_users: [vip]}\n")
    out = publish(etcd, path)
    assert out.returncode == 0, out.stderr
    assert keys(etcd)["checkout"]["variants"] == {"on": True, "off": False}
    from_file = await start_agent([path], socket=str(tmp_path / "f.sock"))
    from_etcd = await start_agent([f"etcd://{etcd.endpoints[0]}{PREFIX}"], socket=str(tmp_path / "e.sock"))
    async with await LineClient.connect(from_file.socket_path) as f, \
            await LineClient.connect(from_etcd.socket_path) as e:
        for user in ["vip", *(f"u{i}" for i in range(200))]:
            request = {"op": "evaluate", "flag": "checkout", "context": {"targetingKey": user}}
            assert (await f.result(request))["value"] == (await e.result(request))["value"], user


def test_an_unreachable_store_is_exit_3(tmp_path):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FILE))
    out = flagsock("publish", str(path), "--to", f"etcd://127.0.0.1:9{PREFIX}")
    assert out.returncode == 3 and "cannot reach etcd" in out.stderr and "Traceback" not in out.stderr


def test_a_bad_destination_is_exit_2(tmp_path):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FILE))
    for to in ("etcd://127.0.0.1:2379", "http://x/y", "etcd:///prefix"):
        out = flagsock("publish", str(path), "--to", to)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (to, out.stderr)


def test_a_fifo_or_a_device_is_refused_not_read(tmp_path):
    import os

    fifo = tmp_path / "flags.json"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        out = flagsock("publish", str(path), "--to", f"etcd://127.0.0.1:9{PREFIX}", timeout=20)
        assert out.returncode == 1 and "Traceback" not in out.stderr, (path, out.stderr)
        assert "nothing was written" in out.stderr or str(path) in out.stderr
