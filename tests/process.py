"""Run the real ``flagsock`` command as a subprocess, for CLI and signal tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGSOCK = [sys.executable, "-m", "agent"]


def flagsock(*args: str, env: dict[str, str] | None = None, timeout: float = 20, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a flagsock command to completion and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*FLAGSOCK, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          input=input, cwd=Path(__file__).resolve().parents[1])


def wait_for_socket(path: str | os.PathLike[str], proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    """Block until something accepts and answers ``ping`` on ``path`` (or fail with the agent's stderr)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"agent exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(os.fspath(path))
                s.sendall(b"ping\n")
                if s.recv(4096):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no agent answered on {path} within {timeout} s")
        time.sleep(0.02)


class AgentProcess:
    """``with AgentProcess(["--flags", f, "--socket", s]) as agent:`` runs ``flagsock serve``."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, socket_path: str | None = None,
                 wait: bool = True) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.socket_path = socket_path or args[args.index("--socket") + 1]
        self.wait = wait
        self.proc: subprocess.Popen | None = None
        # The agent's output goes to a file, not a pipe: a pipe nobody reads until stop() fills
        # up (64 KiB) and then blocks the agent in the middle of whatever it was logging.
        self._output = tempfile.TemporaryFile(mode="w+")

    def __enter__(self) -> "AgentProcess":
        self.proc = subprocess.Popen([*FLAGSOCK, "serve", *self.args], env=self.env, stdout=self._output,
                                     stderr=subprocess.STDOUT, text=True,
                                     cwd=Path(__file__).resolve().parents[1])
        if self.wait:
            try:
                wait_for_socket(self.socket_path, self.proc)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; agent output: {self.output()}") from None
        return self

    def output(self) -> str:
        """Everything the agent wrote so far (stdout and stderr, interleaved)."""
        self._output.seek(0)
        return self._output.read()

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"agent did not stop within {timeout} s after {signum}: {self.output()}")
        return self.proc.returncode, self.output()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._output.close()
