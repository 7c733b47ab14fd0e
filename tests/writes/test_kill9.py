"""kill -9 in the middle of a stream of writes: no acknowledged write is lost, the file is valid.

Each trial starts ``python -m agent serve`` as a subprocess, pipelines writes on one connection
and records every acknowledgement, SIGKILLs the agent at a random moment, checks the file on
disk, then restarts the agent on it and checks it serves every acknowledged write.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.engine.formats.document import parse_flag_document
from tests.helpers import SEED, write_json
from tests.process import wait_for_socket
from tests.writes.conftest import FLAGD_DOC

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 6
WRITES_PER_TRIAL = 400


def start(flags: Path, sock: str, log: Path) -> subprocess.Popen:
    # stderr to a file: a pipe nobody reads would fill up and stall the agent.
    err = open(log, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--flags", str(flags), "--socket", sock],
                            stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    err.close()
    wait_for_socket(sock, proc)
    return proc


class Streamer(threading.Thread):
    """Pipelines ``set`` requests and records each acknowledged one, until the agent dies."""

    def __init__(self, sock: str, trial: int) -> None:
        super().__init__(daemon=True)
        self.sock_path = sock
        self.trial = trial
        self.acked: list[int] = []
        self.revisions: list[int] = []
        self.started_writing = threading.Event()

    def message(self, i: int) -> dict:
        return {"op": "set", "flag": f"t{self.trial}_{i}", "enabled": True, "allowed_users": [f"u{i}"], "id": i}

    def run(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.sock_path)
            s.settimeout(10)
            s.sendall(b"".join(json.dumps(self.message(i)).encode() + b"\n" for i in range(WRITES_PER_TRIAL)))
            reader = s.makefile("rb")
            self.started_writing.set()
            try:
                for line in reader:
                    answer = json.loads(line)
                    assert answer["ok"], answer
                    self.acked.append(answer["id"])
                    self.revisions.append(answer["result"]["revision"])
            except (OSError, ValueError):
                pass


@pytest.mark.parametrize("fmt", ["simple", "flagd"])
def test_kill_9_never_loses_an_acknowledged_write(tmp_path, sock_dir, fmt):
    flags = tmp_path / "flags.json"
    write_json(flags, SEED if fmt == "simple" else FLAGD_DOC)
    sock = str(sock_dir / "kill.sock")
    log = tmp_path / "agent.log"
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    killed_mid_stream = 0
    acked_counts = []
    deadline = time.monotonic() + 90
    for trial in range(TRIALS):
        assert time.monotonic() < deadline, "kill -9 trials took too long"
        proc = start(flags, sock, log)
        streamer = Streamer(sock, trial)
        streamer.start()
        assert streamer.started_writing.wait(10)
        time.sleep(rng.uniform(0.02, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        streamer.join(10)
        assert not streamer.is_alive()
        acked = streamer.acked
        acked_counts.append(len(acked))
        if len(acked) < WRITES_PER_TRIAL:
            killed_mid_stream += 1
        assert acked == list(range(len(acked))), "answers come in request order"
        assert streamer.revisions == sorted(set(streamer.revisions))

        data = flags.read_bytes()
        parsed = parse_flag_document(data, str(flags))  # raises if the file is not valid
        doc = json.loads(data)
        for i in acked:
            assert f"t{trial}_{i}" in parsed.flags, f"trial {trial}: acknowledged write {i} is lost"
        # At most the one write in flight when the kill came may be there unacknowledged.
        present = [i for i in range(WRITES_PER_TRIAL) if f"t{trial}_{i}" in parsed.flags]
        assert present == list(range(len(present))) and len(present) - len(acked) in (0, 1)
        assert parsed.format == fmt and ("$schema" in doc) == (fmt == "flagd")

        # Restarted on that file, the agent serves every acknowledged write.
        proc = start(flags, sock, log)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(sock)
                s.settimeout(10)
                s.sendall(b'{"op": "evaluate_all"}\n')
                served = json.loads(s.makefile("rb").readline())["result"]["flags"]
            for i in acked:
                assert served[f"t{trial}_{i}"]["value"] is True
            # A temporary file a kill left behind is cleared by the next start.
            assert not [p for p in os.listdir(tmp_path) if p.endswith(".flagsock-tmp")]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    print(f"kill -9 ({fmt}): {TRIALS} trials, acknowledged writes before the kill: {acked_counts}")
    assert killed_mid_stream >= TRIALS // 2, f"only {killed_mid_stream} of {TRIALS} kills landed mid-stream"
