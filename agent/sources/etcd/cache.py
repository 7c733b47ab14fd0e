"""The last good version of an etcd prefix, kept on disk under ``--state-dir``.

An agent that starts while etcd is unreachable serves this copy (marked stale, with the time it
was fetched) instead of nothing, and replaces it as soon as etcd answers. Only a version that
parsed is written, so a bad version in etcd never replaces a good copy. The file is replaced
durably (a temporary file fsynced, renamed, the directory fsynced): a crash leaves the old copy
or the new one. Blocking: called from ``load``, in a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from types import MappingProxyType

import orjson

from agent.sources.etcd.codec import KeyValue, b64, unb64
from agent.sources.etcd.version import Version

log = logging.getLogger("flagsock.etcd")

FORMAT = 1


def cache_path(state_dir: str, url: str) -> str:
    """``STATE_DIR/etcd-<hash of the url>.json``: one file per source, whatever its URL holds."""
    return os.path.join(state_dir, f"etcd-{hashlib.sha256(url.encode()).hexdigest()[:16]}.json")


def save(path: str, url: str, version: Version, fetched_at: float) -> None:
    body = orjson.dumps({
        "format": FORMAT, "url": url, "revision": version.revision, "fetched_at": fetched_at,
        "kvs": [[b64(kv.key), b64(kv.value), kv.create_revision, kv.mod_revision, kv.version]
                for kv in version.kvs.values()],
    })
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".etcd-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: str, url: str) -> tuple[Version, float] | None:
    """The cached version and when it was fetched; None when there is none or it is unusable."""
    try:
        with open(path, "rb") as f:
            raw = orjson.loads(f.read())
        if raw.get("format") != FORMAT or raw.get("url") != url:
            log.warning("%s: %s is not this source's cache; ignoring it", url, path)
            return None
        table = {}
        for key, value, created, modified, count in raw["kvs"]:
            kv = KeyValue(unb64(key), unb64(value), int(created), int(modified), int(count))
            table[kv.key] = kv
        return Version(int(raw["revision"]), MappingProxyType(table)), float(raw["fetched_at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: cannot use the cached copy %s (%s); starting without it", url, path, exc)
        return None
