"""The change history on disk: one JSON line per change, appended and fsynced, rewritten to drop
the oldest. Blocking; :class:`~agent.store.history.History` calls it from a worker thread.

Appends are ``O_APPEND`` writes followed by ``fsync``, so an acknowledged batch survives a power
cut. A crash in the middle of a write leaves at most one partial last line: :meth:`load` cuts it
off (and says so) before anything is appended after it. Dropping the oldest lines is a rewrite
of the whole file, atomically (temporary file, fsync, rename, fsync of the directory), so the
file is always either the old or the new list of lines.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("flagsock.history")

TEMP_SUFFIX = ".flagsock-tmp"


class HistoryFile:
    """``path``: the JSON-lines file (its directory must exist).

    Resource handling: opens the file for each batch and closes it before returning.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.size = 0

    def load(self) -> list[bytes]:
        """The file's whole lines, oldest first (creating an empty file where there is none)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.append([])  # create it now: an unwritable state directory shows at start
            _fsync_directory(os.path.dirname(self.path))
            return []
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("%s ended in a partial line (%d bytes, from a crash while writing); cut it off",
                        self.path, len(data) - end)
            os.truncate(self.path, end)
            data = data[:end]
        self.size = len(data)
        return data.splitlines(keepends=True)

    def append(self, lines: list[bytes]) -> None:
        """Append ``lines`` (each ending in a newline) and fsync."""
        data = b"".join(lines)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.size += len(data)

    def rewrite(self, lines: list[bytes]) -> None:
        """Replace the file's content with ``lines``, atomically and durably."""
        directory = os.path.dirname(self.path) or "."
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}{TEMP_SUFFIX}")
        data = b"".join(lines)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_directory(directory)
        self.size = len(data)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
