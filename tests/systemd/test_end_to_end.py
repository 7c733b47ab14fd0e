"""The real agent process under stand-ins for systemd.

* ``systemd-socket-activate`` binds the socket and execs the agent on the first connection,
  exactly as a ``.socket`` unit would hand it over (``LISTEN_FDS``/``LISTEN_PID``).
* A datagram socket in ``$NOTIFY_SOCKET`` records the whole sd_notify conversation: READY
  only once the socket answers, STATUS, watchdog pings, a SIGHUP reload, STOPPING.

The agent runs as ``python -m agent serve``, so these tests need nothing installed on PATH.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Message, NotifyRecorder

REPO = Path(__file__).resolve().parents[2]
AGENT = [sys.executable, "-m", "agent", "serve"]
FLAGS = {
    "flags": {
        "new-checkout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
        }
    }
}
# Variables a test run may itself have inherited from systemd; the agent must see only ours.
_SYSTEMD_VARIABLES = (
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
)


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags" / "flags.json"
    path.parent.mkdir()
    path.write_text(json.dumps(FLAGS))
    return path


@pytest.fixture
def processes() -> Iterator[list[tuple[subprocess.Popen[bytes], Path | None]]]:
    """(process, stderr file or None for a pipe) a test starts; killed if still running.

    Whatever the agent wrote to stderr is printed at teardown, so a failing test shows why.
    """
    started: list[tuple[subprocess.Popen[bytes], Path | None]] = []
    yield started
    for proc, stderr_path in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if stderr_path is not None:
            text = stderr_path.read_text(errors="replace")
        else:
            text = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.stderr:
                proc.stderr.close()
        print(f"--- stderr of {proc.args[0]} (exit {proc.returncode}) ---\n{text}")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARIABLES}
    env.update(extra)
    return env


def ask(conn: socket.socket, request: dict) -> dict:
    """Send one request line and read the one response line."""
    conn.sendall(json.dumps(request).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(65536)
        assert chunk, f"agent closed the connection before answering {request}"
        buf += chunk
    return json.loads(buf)


def connect(path: Path, timeout: float = 10.0) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    conn.connect(str(path))
    return conn


def read_stderr_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """Read ``proc``'s stderr pipe until a line holds ``marker``; fail at the deadline."""
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while marker not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} on stderr in {timeout}s: {seen!r}"
            if sel.select(remaining):
                chunk = os.read(proc.stderr.fileno(), 4096)
                assert chunk, f"stderr closed before {marker!r}: {seen!r}"
                seen += chunk
    return seen


def assert_exits_cleanly(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Exit 0 within a few seconds of SIGTERM: the default --shutdown-timeout (3 s) + slack."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"agent still running {timeout}s after SIGTERM")
    assert code == 0


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_agent_serves_the_socket_handed_over_by_systemd_socket_activate(
    tmp_path: Path, flag_file: Path, processes
) -> None:
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed (Debian: apt-get install systemd)")
    sock_path = tmp_path / "agent.sock"
    proc = subprocess.Popen(
        [activate, "-l", str(sock_path), "--fdname=flagsock", *AGENT, "--flags", str(flag_file)],
        cwd=REPO,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    processes.append((proc, None))
    read_stderr_until(proc, b"Listening on", timeout=10)

    # This connection waits in the backlog; it is what makes systemd-socket-activate exec the
    # agent (in its own process, so proc.pid is the agent's pid from then on).
    first = connect(sock_path)
    pong = ask(first, {"op": "ping", "id": 1})
    assert (pong["id"], pong["ok"]) == (1, True), pong
    assert isinstance(pong["result"]["revision"], int)
    # A second client proves the agent serves the listening socket, not one connection.
    with connect(sock_path) as second:
        answer = ask(second, {"op": "evaluate", "id": "e", "flag": "new-checkout"})
    assert answer["ok"] is True, answer
    assert (answer["result"]["value"], answer["result"]["variant"]) == (True, "on")

    # An idle client must not hold up a graceful stop.
    proc.send_signal(signal.SIGTERM)
    assert_exits_cleanly(proc)
    first.close()
    # The socket was systemd's: the agent must leave its path in place.
    assert sock_path.exists()


def start_notifying_agent(
    tmp_path: Path, flag_file: Path, recorder: NotifyRecorder, processes, **env: str
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start the agent on its own socket, with ``recorder`` as ``$NOTIFY_SOCKET``.

    ``JOURNAL_STREAM`` names the stderr file, as systemd does for a journal stream, so
    ``--log-format auto`` must pick journal. Returns the process, its socket and stderr file.
    """
    sock_path = tmp_path / "agent.sock"
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        st = os.fstat(stderr.fileno())
        proc = subprocess.Popen(
            [*AGENT, "--flags", str(flag_file), "--socket", str(sock_path)],
            cwd=REPO,
            env=clean_env(
                NOTIFY_SOCKET=recorder.env_value,
                JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}",
                **env,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    processes.append((proc, stderr_path))
    return proc, sock_path, stderr_path


def test_notify_conversation_covers_ready_watchdog_reload_and_stopping(
    tmp_path: Path, flag_file: Path, notify_recorder: NotifyRecorder, processes
) -> None:
    # WATCHDOG_USEC=0.4s: a ping every 0.2s.
    proc, sock_path, stderr_path = start_notifying_agent(
        tmp_path, flag_file, notify_recorder, processes, WATCHDOG_USEC="400000"
    )

    def wait_for(key: str, what: str, *, after: int = 0) -> Message:
        """The first message from index ``after`` on holding ``key``, waiting for it."""
        for message in notify_recorder.messages[after:]:
            if key in message:
                return message
        return notify_recorder.wait_for(lambda m: key in m, process=proc, what=what)

    # READY=1 only once the socket answers: a client told "ready" must get through at once.
    ready = wait_for("READY", "READY=1 at startup")
    assert ready["READY"] == "1"
    with connect(sock_path) as conn:
        assert ask(conn, {"op": "ping", "id": 1})["ok"] is True
    statuses = [m["STATUS"] for m in notify_recorder.messages if "STATUS" in m]
    assert statuses, "no STATUS= line by the time READY=1 was sent"
    assert re.search(r"revision \d+, 1 flags?\b", statuses[-1]), statuses

    # The watchdog keeps pinging after READY.
    for _ in range(2):
        ping = wait_for("WATCHDOG", "a WATCHDOG=1 ping", after=len(notify_recorder.messages))
        assert ping == {"WATCHDOG": "1"}
    assert all("WATCHDOG" not in m or m == {"WATCHDOG": "1"} for m in notify_recorder.messages)

    # SIGHUP: RELOADING=1 with the monotonic clock of this moment in the same datagram, then
    # READY=1 again once the reload is over.
    mark = len(notify_recorder.messages)
    before = monotonic_usec()
    proc.send_signal(signal.SIGHUP)
    reloading = wait_for("RELOADING", "RELOADING=1 after SIGHUP", after=mark)
    after = monotonic_usec()
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after, reloading
    reload_index = notify_recorder.messages.index(reloading)
    wait_for("READY", "READY=1 after the reload", after=reload_index + 1)
    wait_for("WATCHDOG", "a WATCHDOG=1 ping after the reload", after=reload_index + 1)

    # SIGTERM: STOPPING=1, exit 0, and the socket file the agent bound itself is removed.
    mark = len(notify_recorder.messages)
    proc.send_signal(signal.SIGTERM)
    wait_for("STOPPING", "STOPPING=1 after SIGTERM", after=mark)
    assert_exits_cleanly(proc)
    notify_recorder.pending()
    stopping_index = next(i for i, m in enumerate(notify_recorder.messages) if "STOPPING" in m)
    assert not any("READY" in m for m in notify_recorder.messages[stopping_index:])
    assert not sock_path.exists()

    log_lines = [line for line in stderr_path.read_text().splitlines() if line]
    assert log_lines, "the agent logged nothing"
    assert all(re.match(r"<[0-7]>", line) for line in log_lines), log_lines


def test_failed_reload_shows_in_status_and_the_last_good_flags_stay(
    tmp_path: Path, flag_file: Path, notify_recorder: NotifyRecorder, processes
) -> None:
    proc, sock_path, _ = start_notifying_agent(tmp_path, flag_file, notify_recorder, processes)
    ready = notify_recorder.wait_for(lambda m: "READY" in m, process=proc, what="READY=1")
    revision = re.search(r"revision (\d+)", ready["STATUS"]).group(1)

    flag_file.write_text('{"flags": {"new-checkout": ')
    mark = len(notify_recorder.messages)
    proc.send_signal(signal.SIGHUP)
    notify_recorder.wait_for(lambda m: "RELOADING" in m, process=proc, what="RELOADING=1")
    after_reload = notify_recorder.wait_for(
        lambda m: "READY" in m, process=proc, what="READY=1 after the failed reload"
    )
    # Every STATUS= from the reload on tells the operator: same revision, and what failed.
    status = after_reload["STATUS"]
    assert f"revision {revision}," in status, status
    assert "flags.json" in status, status
    assert all(
        "flags.json" in m["STATUS"] for m in notify_recorder.messages[mark:] if "STATUS" in m
    )
    with connect(sock_path) as conn:
        answer = ask(conn, {"op": "evaluate", "flag": "new-checkout"})
    assert answer["result"]["value"] is True, answer

    proc.send_signal(signal.SIGTERM)
    assert_exits_cleanly(proc)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 when asked (``systemd-socket-activate`` refuses port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sockets_are_told_apart_by_name_ndjson_on_one_and_ofrep_on_the_http_ones(
    tmp_path: Path, flag_file: Path, notify_recorder: NotifyRecorder, processes
) -> None:
    """As flagsock.socket and flagsock-http.socket hand them over: the HTTP sockets come first in
    descriptor order here, so only their names can tell the agent which is which."""
    import httpx

    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed (Debian: apt-get install systemd)")
    ndjson_path, http_path = tmp_path / "flagsock.sock", tmp_path / "http.sock"
    port = free_loopback_port()
    proc = subprocess.Popen(
        [activate, "-l", f"127.0.0.1:{port}", "-l", str(http_path), "-l", str(ndjson_path),
         "--fdname=http:http:flagsock", f"--setenv=NOTIFY_SOCKET={notify_recorder.env_value}",
         *AGENT, "--flags", str(flag_file)],
        cwd=REPO,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    processes.append((proc, None))
    read_stderr_until(proc, str(ndjson_path).encode(), timeout=10)  # "Listening on ..." for the last one

    ofrep = "/ofrep/v1/evaluate/flags/new-checkout"
    body = {"context": {"targetingKey": "u1"}}
    # The first connection, on the TCP port, is what starts the agent.
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as tcp:
        answer = tcp.post(ofrep, json=body)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["value"], answer.json()["variant"]) == (True, "on")
        assert answer.headers["server"].startswith("flagsock/")
        assert tcp.get("/readyz").status_code == 200
    notify_recorder.wait_for(lambda m: m.get("READY") == "1", process=proc, what="READY=1")
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(http_path)), base_url="http://localhost",
                      timeout=10) as unix:
        bulk = unix.post("/ofrep/v1/evaluate/flags", json=body)
        assert bulk.status_code == 200 and bulk.headers["etag"], bulk.text
        assert [f["key"] for f in bulk.json()["flags"]] == ["new-checkout"]
    with connect(ndjson_path) as conn:
        answer = ask(conn, {"op": "evaluate", "id": 1, "flag": "new-checkout"})
        assert answer["result"]["value"] is True, answer
        # An HTTP request on the NDJSON socket is just a line that is not JSON.
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        refusal = json.loads(conn.recv(65536).split(b"\n")[0])
        assert refusal["ok"] is False and refusal["error"]["code"] == "BAD_REQUEST", refusal
    # ...and an NDJSON line on an HTTP socket is a malformed request.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b'{"op": "ping"}\n\n')
        assert raw.recv(65536).startswith(b"HTTP/1.1 400 ")

    proc.send_signal(signal.SIGTERM)
    assert_exits_cleanly(proc)
    # Every socket was systemd's: the agent leaves their paths in place.
    assert ndjson_path.exists() and http_path.exists()
