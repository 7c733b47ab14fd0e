"""Log setup for the three places flagsock's logs end up: a terminal, journald, a log shipper.

* ``text``: ``2026-11-23 16:45:02.123 INFO    flagsock.server: message``, for people.
* ``journal``: ``<6>flagsock.server: message``. journald stamps the time itself and reads the
  ``<N>`` prefix as the syslog priority, so ``journalctl -p warning`` works. Every line of a
  multi-line message carries the prefix, so a traceback cannot smuggle in lines at the
  wrong priority (or, without one, at the unit's default priority).
* ``json``: one object per line with ``ts``, ``level``, ``logger``, ``msg`` and any fields given
  through ``extra=``, for shippers that index fields.

``auto`` picks ``journal`` when stderr is the stream systemd connected to the journal, else
``text``. Everything the agent logs is under the ``flagsock`` logger.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Final, TextIO

__all__ = ["FORMATS", "JournalFormatter", "JsonFormatter", "TextFormatter", "configure_logging"]

FORMATS: Final = ("auto", "text", "journal", "json")

#: The root of every logger name in the agent.
ROOT_LOGGER: Final = "flagsock"

# Marks the handler configure_logging installs, so a second call replaces only that one.
_HANDLER_NAME: Final = "flagsock"

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """Readable lines with a local timestamp, for a terminal or a plain file."""

    default_msec_format = "%s.%03d"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


class JournalFormatter(logging.Formatter):
    """``<N>``-prefixed lines for journald's stream protocol, without timestamps."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_syslog_priority(record.levelno)}>"
        text = f"{record.name}: {_message_with_exception(self, record)}"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, RFC 3339), ``level``, ``logger``, ``msg``, extras."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "ts": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            # The standard fields win over an extra of the same name, so a shipper can rely
            # on ``level`` and ``msg`` meaning what they always mean.
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        # ``default=repr``: a log line is no place to raise over an unserialisable extra.
        return json.dumps(entry, ensure_ascii=False, default=repr)


def configure_logging(
    fmt: str = "auto",
    level: str | int = "info",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Send log records to ``stream`` (stderr by default) in the chosen format.

    Calling it again replaces the handler it installed before, so ``serve`` can configure
    early with defaults and again once options are parsed.

    Args:
        fmt: ``auto``, ``text``, ``journal`` or ``json``.
        level: the ``flagsock`` loggers' threshold, a name (``"debug"``) or a number.
            Other libraries' loggers stay at warning unless ``level`` is stricter.
        stream: where lines go.
        environ: where to look for ``JOURNAL_STREAM`` (``os.environ`` by default).

    Returns:
        The format in use, with ``auto`` resolved.

    Raises:
        ValueError: an unknown format or level, naming the accepted ones.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of: {', '.join(FORMATS)}")
    threshold = _parse_level(level)
    out = sys.stderr if stream is None else stream
    if fmt == "auto":
        env = os.environ if environ is None else environ
        fmt = "journal" if _is_journal_stream(out, env) else "text"
    formatter = {"text": TextFormatter, "journal": JournalFormatter, "json": JsonFormatter}[fmt]()

    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    # Python's own warnings would otherwise go to stderr raw: unprefixed in the journal.
    logging.captureWarnings(True)
    root.setLevel(max(threshold, logging.WARNING))
    logging.getLogger(ROOT_LOGGER).setLevel(threshold)
    return fmt


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of: {', '.join(_LEVELS)}") from None


def _syslog_priority(levelno: int) -> int:
    # sd-daemon(3): 2 crit, 3 err, 4 warning, 6 info, 7 debug. Nothing maps to 5 (notice).
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _message_with_exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + formatter.formatException(record.exc_info)
    if record.stack_info:
        text += "\n" + formatter.formatStack(record.stack_info)
    return text


def _is_journal_stream(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journal connection systemd described in ``JOURNAL_STREAM``.

    systemd.exec(5) sets ``JOURNAL_STREAM=DEVICE:INODE`` for the stream it connected to
    journald. Comparing it with the stream's own identity (as the man page advises) keeps a
    child whose stderr was redirected, e.g. to a file, from writing ``<6>`` into that file.
    A stream without a descriptor cannot be checked; the variable alone decides then.
    """
    value = environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False
