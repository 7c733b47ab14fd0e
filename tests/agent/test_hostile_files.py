"""No flag file kills or hangs the agent (issue 13 point 1), at start, on hot reload, on SIGHUP.

Whatever is at a flag path (JSON that breaks an encoder, a FIFO, a device, a file past the
limits, a source whose load raises or never returns) is a load error of that source: ``health``
turns ``degraded`` with the reason, the last good flags keep being served, and the agent keeps
answering, reloading and stopping.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest
import trio

from agent.engine.model import ParsedSource
from agent.sources.base import LoadOptions, SourceOutcome, SourceState, source_state
from agent.store.reloader import Reloader
from agent.store.store import Store
from tests.helpers import LineClient, write_json
from tests.process import AgentProcess, flagsock

GOOD = {"flags": {"a": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}}


def deep_doc(depth: int, where: str = "variant") -> str:
    deep = "[" * depth + "1" + "]" * depth
    if where == "variant":
        return ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": {"v": %s}, "off": {}}, '
                '"defaultVariant": "on"}}}' % deep)
    if where == "targeting":
        return ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": true, "off": false}, '
                '"defaultVariant": "on", "targeting": {"in": ["x", %s]}}}}' % deep)
    return '{"flags": {"a": {"enabled": true}}, "notes": %s}' % deep


async def health(sock) -> dict:
    async with await LineClient.connect(sock) as c:
        return await c.result({"op": "health"})


async def answer(sock, message: dict, timeout: float = 5.0) -> dict:
    async with await LineClient.connect(sock) as c:
        return await c.request(message, timeout)


async def value(sock, flag: str = "a"):
    reply = await answer(sock, {"op": "evaluate", "flag": flag})
    return reply["result"]["value"] if reply["ok"] else reply["error"]["code"]


# --- at start, in a real process ---------------------------------------------------------------

def test_deep_files_at_start_are_load_errors_and_the_agent_serves_the_rest(tmp_path, sock_dir):
    # Each used to stop the agent at start with a TypeError traceback (255-1024 levels).
    files = []
    for depth, where in ((255, "variant"), (600, "targeting"), (1000, "top"), (1100, "variant")):
        path = tmp_path / f"deep-{depth}.json"
        path.write_text(deep_doc(depth, where))
        files.append(path)
    good = write_json(tmp_path / "good.json", {"flags": {"g": {"enabled": True}}})
    sock = str(sock_dir / "a.sock")
    args = [arg for f in (*files, good) for arg in ("--flags", str(f))] + ["--socket", sock]
    with AgentProcess(args) as agent:
        reply = _request(sock, {"op": "health"})["result"]
        assert reply["status"] == "degraded" and reply["flag_count"] == 1
        errors = {s["path"]: s["error"]["message"] for s in reply["sources"] if s["error"]}
        assert sorted(errors) == sorted(str(f) for f in files)
        assert all("levels deep" in message for message in errors.values()), errors
        assert _request(sock, {"op": "evaluate", "flag": "g"})["result"]["value"] is True
        status, err = agent.stop()
    assert status == 0 and "Traceback" not in err


def test_sighup_with_a_deep_file_keeps_the_agent_and_its_flags(tmp_path, sock_dir):
    # SIGHUP (systemctl reload) used to kill the agent on such a file.
    flags = write_json(tmp_path / "flags.json", GOOD)
    sock = str(sock_dir / "a.sock")
    with AgentProcess(["--flags", str(flags), "--socket", sock]) as agent:
        for depth in (300, 700):
            flags.write_text(deep_doc(depth))  # in place, as an editor might
            agent.send_signal(signal.SIGHUP)
            _wait_until(lambda: _request(sock, {"op": "health"})["result"]["status"] == "degraded")
            assert agent.proc.poll() is None
            assert _request(sock, {"op": "evaluate", "flag": "a"})["result"]["value"] is True
        status, err = agent.stop()
    assert status == 0 and "Traceback" not in err


def _request(sock: str, message: dict) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock)
        s.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "the agent closed the connection"
            data += chunk
    return json.loads(data)


def _wait_until(predicate, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- hot reload, in process ---------------------------------------------------------------------

BAD_VERSIONS = {
    "255 deep variant": (deep_doc(255), "levels deep"),
    "600 deep rule": (deep_doc(600, "targeting"), "levels deep"),
    "1000 deep member": (deep_doc(1000, "top"), "levels deep"),
    "duplicate flag key": ('{"flags": {"a": {"enabled": true}, "a": {"enabled": false}}}', "duplicate flag key"),
    "2**64": ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": 18446744073709551616}, '
              '"defaultVariant": "on"}}}', "64 bits"),
    "no flags": ("{}", "no flags"),
    "too many flags": (json.dumps({"flags": {f"f{i}": {"enabled": True} for i in range(6)}}), "max-flags"),
    "too large": (json.dumps({"flags": {"a": {"enabled": True, "description": "x" * 5000}}}), "max-file-bytes"),
    "evaluator bomb": (json.dumps({"$evaluators": {"e0": {"var": "x"}, **{f"e{i}": {"or": [{"$ref": f"e{i-1}"}] * 2}
                                                                          for i in range(1, 30)}},
                                   "flags": {"a": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on",
                                                   "targeting": {"$ref": "e29"}}}}), "max-rule-nodes"),
}


@pytest.mark.parametrize("case", sorted(BAD_VERSIONS))
async def test_a_bad_version_on_hot_reload_is_an_error_in_health_and_the_last_good_is_served(
        start_agent, tmp_path, case):
    # A deep file used to leave health "ok" while the file was silently not served.
    text, words = BAD_VERSIONS[case]
    flags = write_json(tmp_path / "flags.json", GOOD)
    running = await start_agent([flags], max_flags=5, max_file_bytes=4096)
    async with await LineClient.connect(running.socket_path) as sub:
        assert (await sub.request({"op": "subscribe"}))["ok"]
        flags.write_text(text)
        with trio.fail_after(5):
            while (event := await sub.receive()).get("event") != "reload_failed":
                pass
    assert words in event["message"]
    report = await health(running.socket_path)
    assert report["status"] == "degraded" and words in report["last_error"]["message"]
    assert await value(running.socket_path) is True
    reply = await answer(running.socket_path, {"op": "reload"})
    assert reply["error"]["code"] == "RELOAD_FAILED" and words in reply["error"]["message"]
    write_json(flags, {"flags": {"a": {"enabled": False}}})
    with trio.fail_after(5):
        while (await health(running.socket_path))["status"] != "ok":
            await trio.sleep(0.02)
    assert await value(running.socket_path) is False


# --- what is at the path: FIFOs, devices, sockets, directories -----------------------------------

def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _link_to(target: str):
    def make(path: Path) -> None:
        os.symlink(target, path)
    return make


def _socket_file(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


# A device every user may write is refused by the path's trust check (agent/sources/trust.py)
# before it is read; one only root may write (/dev/kmsg, a loop device) by the read itself.
_WORLD_WRITABLE = "writable by every user"
SPECIAL = {
    "FIFO": (_fifo, ("FIFO",)),
    "link to /dev/zero": (_link_to("/dev/zero"), ("character device", _WORLD_WRITABLE)),
    "link to /dev/null": (_link_to("/dev/null"), ("character device", _WORLD_WRITABLE)),
    "link to /dev/urandom": (_link_to("/dev/urandom"), ("character device", _WORLD_WRITABLE)),
    "link to /dev/kmsg": (_link_to("/dev/kmsg"), ("character device",)),
    "link to /dev/loop0": (_link_to("/dev/loop0"), ("block device",)),
    "socket": (_socket_file, ("socket",)),
    "directory": (os.mkdir, ("directory",)),
}


def _said(words: tuple[str, ...], message: str) -> bool:
    return any(w in message for w in words)


@pytest.mark.parametrize("kind", sorted(SPECIAL))
async def test_something_other_than_a_file_at_the_path_never_blocks_reload_write_or_stop(
        start_agent, tmp_path, sock_dir, kind):
    # A FIFO used to hang reload and set forever and make the agent ignore SIGTERM; a link to
    # /dev/zero grew memory until the host ran out.
    make, words = SPECIAL[kind]
    target = kind.partition("link to ")[2]
    if target and not os.path.exists(target):
        pytest.skip(f"{target} does not exist on this host")
    flags = write_json(tmp_path / "flags.json", GOOD)
    running = await start_agent([flags], socket=str(sock_dir / f"{kind[-4:]}.sock"))
    flags.unlink()
    make(flags)
    sock = running.socket_path
    with trio.fail_after(10):
        reply = await answer(sock, {"op": "reload"})
        assert reply["ok"] is False and _said(words, reply["error"]["message"]), reply
        assert _said(words, (await health(sock))["last_error"]["message"])
        assert await value(sock) is True
        refusal = await answer(sock, {"op": "set", "flag": "b", "enabled": True})
        assert refusal["ok"] is False and refusal["error"]["code"] in ("READ_ONLY", "INVALID_FLAG"), refusal
    running.stop()


@pytest.mark.parametrize("kind", ["FIFO", "link to /dev/zero", "directory"])
def test_validate_says_what_is_at_the_path_and_does_not_block(tmp_path, kind):
    make, words = SPECIAL[kind]
    path = tmp_path / "flags.json"
    make(path)
    done = flagsock("validate", str(path), timeout=20)
    assert done.returncode == 1 and words[0] in done.stdout


def test_validate_takes_the_same_limits_as_serve(tmp_path):
    path = write_json(tmp_path / "flags.json", {"flags": {f"f{i}": {"enabled": True} for i in range(4)}})
    assert flagsock("validate", str(path)).returncode == 0
    done = flagsock("validate", "--max-flags", "3", str(path))
    assert done.returncode == 1 and "more than the limit of 3" in done.stdout
    path.write_text(deep_doc(70))
    assert "levels deep" in flagsock("validate", str(path)).stdout
    assert flagsock("validate", "--max-depth", "100", str(path)).returncode == 0
    done = flagsock("validate", "--max-file-bytes", "100", str(path))
    assert done.returncode == 1 and "max-file-bytes" in done.stdout


# --- the load boundary: exceptions and loads that never finish ------------------------------------

class FakeSource:
    """A source whose load does what the test says: return a version, raise, or block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.behaviour = "good"
        self.release = threading.Event()
        self.loads = 0

    def load(self, previous: SourceState, options: LoadOptions) -> SourceOutcome:
        self.loads += 1
        if self.behaviour == "block":
            self.release.wait(30)
        elif self.behaviour != "good":
            raise self.behaviour
        parsed = ParsedSource(source=self.name, format="simple", flags={}, problems=(), document=None)
        return SourceOutcome(source_state(self.name, f"hash-{self.loads}", parsed), None)

    async def watch(self, changed, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


@pytest.mark.parametrize("error", [MemoryError(), RecursionError("maximum recursion depth exceeded"),
                                   TypeError("Recursion limit reached"), RuntimeError("a bug"), KeyError("x")])
async def test_any_exception_while_a_source_loads_is_that_source_s_error(error):
    bad, good = FakeSource("bad"), FakeSource("good")
    store = Store(["bad", "good"])
    reloader = Reloader(store, [bad, good], LoadOptions())
    assert (await reloader.reload()).errors == ()
    bad.behaviour = error
    result = await reloader.reload()
    assert len(result.errors) == 1 and result.errors[0].startswith("bad: ")
    assert store.degraded and store.errors["bad"].message == result.errors[0]
    assert store.snapshot.source("bad").content_hash == "hash-1"  # the last good version stays
    assert store.snapshot.source("good").content_hash == "hash-2"  # and the other source moved on


async def test_a_load_past_its_deadline_is_abandoned_as_an_error_and_not_started_twice():
    # A real clock: trio's autojump clock would also jump past the deadline of loads that
    # are merely running in their thread.
    slow, other = FakeSource("slow"), FakeSource("other")
    store = Store(["slow", "other"])
    reloader = Reloader(store, [slow, other], LoadOptions(load_timeout=1))
    await reloader.reload()
    slow.behaviour = "block"
    start = trio.current_time()
    result = await reloader.reload()
    assert 1 <= trio.current_time() - start < 5
    assert len(result.errors) == 1
    assert "longer than 1 s" in result.errors[0] and "load-timeout" in result.errors[0]
    assert store.snapshot.source("slow").content_hash == "hash-1"
    assert store.snapshot.source("other").content_hash == "hash-2"
    again = await reloader.reload()  # the stuck thread still runs: no second one is started
    assert "has still not finished" in again.errors[0] and slow.loads == 2
    slow.behaviour = "good"
    slow.release.set()
    with trio.fail_after(10):
        while True:  # the abandoned load returns (its result is dropped); then loads resume
            result = await reloader.reload()
            if not result.errors:
                break
            await trio.sleep(0.05)
    assert store.snapshot.source("slow").content_hash == f"hash-{slow.loads}"


async def test_a_hanging_load_holds_neither_writes_nor_stop(start_agent, tmp_path, monkeypatch):
    # Any source load that never returns: the reload gives up at its deadline, the lock is free
    # for a write, and the agent stops when asked.
    from agent.sources.files import FileSource

    release = threading.Event()
    real_load = FileSource.load

    def load(self, previous, options):
        if (tmp_path / "hang").exists():
            release.wait(30)
        return real_load(self, previous, options)

    monkeypatch.setattr(FileSource, "load", load)
    flags = write_json(tmp_path / "flags.json", GOOD)
    running = await start_agent([flags], load_timeout=0.5)
    (tmp_path / "hang").touch()
    try:
        with trio.fail_after(10):
            reply = await answer(running.socket_path, {"op": "reload"})
            assert reply["error"]["code"] == "RELOAD_FAILED" and "load-timeout" in reply["error"]["message"]
            written = await answer(running.socket_path, {"op": "set", "flag": "b", "enabled": True})
            assert written["ok"], written
            assert await value(running.socket_path, "b") is True
        running.stop()
    finally:
        release.set()


# --- the settings ------------------------------------------------------------------------------

def test_the_limits_are_settings_of_serve_from_the_command_line_and_the_config_file(tmp_path, sock_dir):
    from agent.config import build_config, settings_from_toml
    from agent.engine.limits import Limits

    cfg = tmp_path / "flagsock.toml"
    cfg.write_text('flags = ["f.json"]\nmax-depth = 20\nmax_file_bytes = 5000\nmax-flags = 2\n'
                   'max-rule-nodes = 300\nload-timeout = 2.5\n')
    config = build_config(settings_from_toml(str(cfg)), {"max_flags": 3})
    assert config.limits == Limits(max_depth=20, max_bytes=5000, max_flags=3, max_rule_nodes=300)
    assert config.load_timeout == 2.5
    for args, words in ((["--max-depth", "4"], "--max-depth takes a whole number of at least 8"),
                        (["--max-flags", "0"], "at least 1"), (["--load-timeout", "0"], "greater than 0")):
        done = flagsock("serve", "--flags", "f.json", *args)
        assert done.returncode == 2 and words in done.stderr, done.stderr
    cfg.write_text('flags = ["f.json"]\nmax-depth = 3\n')
    done = flagsock("serve", "--config", str(cfg))
    assert done.returncode == 2 and "max-depth must be at least 8" in done.stderr
    flags = write_json(tmp_path / "three.json", {"flags": {k: {"enabled": True} for k in "abc"}})
    sock = str(sock_dir / "lim.sock")
    with AgentProcess(["--flags", str(flags), "--socket", sock, "--max-flags", "2"]):
        reply = _request(sock, {"op": "health"})["result"]
        assert reply["status"] == "degraded" and "more than the limit of 2" in reply["last_error"]["message"]
