"""Newline-delimited framing with a line-length limit, as a pure object.

Feed it whatever bytes arrived; take whole lines out. It never touches a socket, so the
daemon, the tests and any other client drive the same code (the h11 pattern).

A line longer than ``max_line_bytes`` is never held whole: once the buffer passes the limit
without a newline, the decoder reports :data:`LINE_TOO_LONG` once, drops what it holds and
discards bytes until the next newline, so memory stays bounded by the limit plus one chunk.
"""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_LINE_BYTES: Final = 1 << 20

_BLANK = b" \t\r"


class _TooLong:
    """Sentinel type for "a line went past the limit and was discarded"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


LINE_TOO_LONG: Final = _TooLong()


class LineDecoder:
    """Split a byte stream into lines.

    Args:
        max_line_bytes: the longest line accepted, not counting the ``\\n`` (nor a ``\\r``
            before it).
    """

    __slots__ = ("_buf", "_discarding", "_max", "_scan_from")

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, not {max_line_bytes}")
        self._max = max_line_bytes
        self._buf = bytearray()
        self._discarding = False
        # Where to resume looking for b"\n": bytes before it are known to hold none.
        self._scan_from = 0

    @property
    def buffered(self) -> int:
        """How many bytes are held waiting for the end of their line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | _TooLong]:
        """Take ``data`` and return every event it completes, in order.

        Returns:
            Whole lines (without the newline or a ``\\r`` before it; blank lines are
            skipped) and :data:`LINE_TOO_LONG` for each line that went past the limit.
        """
        buf = self._buf
        if not buf and not self._discarding and data[-1:] == b"\n" and len(data) <= self._max:
            # The common case: nothing held and only whole lines arrived, none of them over the
            # limit; split them without copying the bytes through the buffer.
            return [line[:-1] if line[-1] == 13 else line for line in data.split(b"\n") if line.strip(_BLANK)]
        out: list[bytes | _TooLong] = []
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return out
            self._discarding = False
            data = data[nl + 1 :]
        buf += data
        start = 0
        limit = self._max
        find = buf.find
        pos = find(b"\n", self._scan_from)
        while pos >= 0:
            end = pos
            if end > start and buf[end - 1] == 13:  # b"\r"
                end -= 1
            if end - start > limit:
                out.append(LINE_TOO_LONG)
            elif end > start:
                line = bytes(buf[start:end])
                if line.strip(_BLANK):
                    out.append(line)
            start = pos + 1
            pos = find(b"\n", start)
        if start:
            del buf[:start]
        if len(buf) > limit + 1:  # +1: a trailing b"\r" may still turn out to end the line
            out.append(LINE_TOO_LONG)
            buf.clear()
            self._discarding = True
        self._scan_from = len(buf)
        return out
