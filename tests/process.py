"""Run the real ``flagsock`` command as a subprocess, for CLI and signal tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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

    def __enter__(self) -> "AgentProcess":
        self.proc = subprocess.Popen([*FLAGSOCK, "serve", *self.args], env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     cwd=Path(__file__).resolve().parents[1])
        if self.wait:
            wait_for_socket(self.socket_path, self.proc)
        return self

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"agent did not stop within {timeout} s after {signum}: {err}")
        return self.proc.returncode, err

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
