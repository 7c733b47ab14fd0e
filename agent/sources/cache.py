"""The last good version of a remote source, kept on disk so a restart while the source is
unreachable still serves it (``--state-dir``).

Written durably (temporary file, fsync, rename, directory fsync) in a worker thread; read once
at start. The file holds the bytes exactly as fetched, with a small JSON header line naming the
source, the validator (ETag) and when it was fetched.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import attrs


@attrs.frozen
class Cached:
    data: bytes
    fetched_at: float
    etag: str | None = None


class LastGood:
    """Args:
    state_dir: the agent's state directory, or None to keep nothing.
    name: the source (its URL), which names the file.
    """

    def __init__(self, state_dir: str | None, name: str) -> None:
        self.name = name
        self.path = None
        if state_dir:
            digest = hashlib.sha256(name.encode()).hexdigest()[:24]
            self.path = os.path.join(state_dir, "sources", f"{digest}.cache")

    def read(self) -> Cached | None:
        """The kept version, or None (none kept, another source's file, or damaged)."""
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as f:
                header, _, data = f.read().partition(b"\n")
            meta = json.loads(header)
            if meta.get("source") != self.name:
                return None
            return Cached(data=data, fetched_at=float(meta["fetched_at"]), etag=meta.get("etag"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, cached: Cached) -> None:
        """Keep ``cached`` durably (blocking). OSError when the state directory is unusable."""
        if self.path is None:
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        header = json.dumps({"source": self.name, "fetched_at": cached.fetched_at, "etag": cached.etag})
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cache.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header.encode() + b"\n" + cached.data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
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
