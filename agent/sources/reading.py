"""Reading a flag file without trusting what is at its path.

Anyone who can write the flag file's directory can put something there that is not a file: a
FIFO (``open`` then blocks until a writer comes, forever), a link to ``/dev/zero`` (``read``
never ends, and memory grows until the host runs out), a terminal (which ``open`` would make
the agent's controlling one), or a regular file of any size. So the file is opened without
blocking and without taking a terminal, the opened descriptor (not the path, which may change
in between) is checked to be a regular file, and no more than the size limit plus one byte is
ever read, whatever the file claims its size is. The path is also checked before it is opened,
because opening some devices does something by itself (``/dev/watchdog`` arms the watchdog).

Both the source (:mod:`agent.sources.files`) and the writer's re-read of the file it is about
to change read through :func:`read_regular_file`.
"""

from __future__ import annotations

import os
import stat

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnreadableFile(OSError):
    """What is at the path is not a flag file the agent may read: not a regular file, or too
    large. ``reason`` says which, for health."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The whole of the regular file at ``path``, if it holds at most ``max_bytes``.

    Raises:
        UnreadableFile: it is not a regular file, or it holds more than ``max_bytes``.
        OSError: it cannot be opened or read (FileNotFoundError, PermissionError...).

    Resource handling: opens and always closes one file descriptor.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise UnreadableFile(path, f"is {_kind(mode)}, not a regular file; a flag file must be one")
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(path, f"is {_kind(info.st_mode)}, not a regular file; a flag file must be one")
        if info.st_size > max_bytes:
            raise UnreadableFile(path, _too_large(info.st_size, max_bytes))
        # The size can change after fstat (a writer appending): read to one byte past the limit
        # at most, and tell "larger than the limit" from "exactly the limit" by that byte.
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise UnreadableFile(path, _too_large(None, max_bytes))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return f"of an unknown kind (mode {mode:o})"


def _too_large(size: int | None, max_bytes: int) -> str:
    holds = f"holds {size:,} bytes" if size is not None else "grew while it was read"
    return (f"{holds}, more than the limit of {max_bytes:,} bytes for a flag file (the max-file-bytes "
            "setting); split it or raise the limit")
