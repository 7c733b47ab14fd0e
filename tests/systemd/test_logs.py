"""configure_logging(): text for people, <N> prefixes for journald, JSON for shippers."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.host.logs import configure_logging

log = logging.getLogger("flagsock.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    flagsock = logging.getLogger("flagsock")
    saved = (list(root.handlers), root.level, flagsock.level)
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            root.removeHandler(handler)
    root.setLevel(saved[1])
    flagsock.setLevel(saved[2])
    logging.captureWarnings(False)


def capture(fmt: str, level: str = "info", **environ: str) -> tuple[io.StringIO, str]:
    out = io.StringIO()
    chosen = configure_logging(fmt, level, stream=out, environ=environ)
    return out, chosen


def boom() -> None:
    raise ValueError("bad\nthings")


def test_text_lines_have_a_timestamp_level_and_logger() -> None:
    out, _ = capture("text")
    log.info("loaded %d flags", 3)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    flagsock\.test: loaded 3 flags\n",
        out.getvalue(),
    )


@pytest.mark.parametrize(
    ("method", "prefix"),
    [("debug", "<7>"), ("info", "<6>"), ("warning", "<4>"), ("error", "<3>"), ("critical", "<2>")],
)
def test_journal_lines_carry_the_syslog_priority_and_no_timestamp(method, prefix) -> None:
    out, _ = capture("journal", "debug")
    getattr(log, method)("hello")
    assert out.getvalue() == f"{prefix}flagsock.test: hello\n"


def test_journal_prefixes_every_line_of_a_multi_line_message_and_traceback() -> None:
    out, _ = capture("journal")
    try:
        boom()
    except ValueError:
        log.exception("reload failed:\nsecond line")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["<3>flagsock.test: reload failed:", "<3>second line"]
    assert any("Traceback" in line for line in lines)
    assert all(line.startswith("<3>") for line in lines)


def test_json_lines_hold_the_fields_and_extras() -> None:
    out, _ = capture("json")
    log.warning("slow reload", extra={"source": "/etc/flagsock/flags.json", "ms": 812})
    entry = json.loads(out.getvalue())
    assert entry.pop("ts").endswith("Z")
    assert entry == {
        "level": "warning",
        "logger": "flagsock.test",
        "msg": "slow reload",
        "source": "/etc/flagsock/flags.json",
        "ms": 812,
    }


def test_json_keeps_standard_fields_over_extras_and_survives_odd_values() -> None:
    out, _ = capture("json")
    try:
        boom()
    except ValueError:
        log.error("failed", exc_info=True, extra={"level": "fake", "peer": object()})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    assert entry["peer"].startswith("<object object")
    assert "ValueError: bad\nthings" in entry["exc"]


def test_level_filters_flagsock_and_keeps_libraries_at_warning() -> None:
    out, _ = capture("journal", "warning")
    log.info("not shown")
    log.warning("shown")
    logging.getLogger("watchfiles.main").info("1 change detected")
    assert out.getvalue() == "<4>flagsock.test: shown\n"


def test_debug_level_shows_flagsock_debug_only() -> None:
    out, _ = capture("journal", "debug")
    log.debug("mine")
    logging.getLogger("watchfiles.main").info("theirs")
    assert out.getvalue() == "<7>flagsock.test: mine\n"


def test_auto_is_journal_when_journal_stream_names_the_stream(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        matching = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert configure_logging("auto", stream=stream, environ=matching) == "journal"
        other = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}
        assert configure_logging("auto", stream=stream, environ=other) == "text"
        assert configure_logging("auto", stream=stream, environ={}) == "text"


def test_auto_trusts_journal_stream_for_a_stream_without_descriptor() -> None:
    assert capture("auto", JOURNAL_STREAM="8:12345")[1] == "journal"
    assert capture("auto")[1] == "text"


def test_configuring_again_replaces_the_handler() -> None:
    first, _ = capture("text")
    second, _ = capture("journal")
    log.info("once")
    assert first.getvalue() == ""
    assert second.getvalue() == "<6>flagsock.test: once\n"


@pytest.mark.parametrize(
    ("fmt", "level", "words"),
    [("xml", "info", "unknown log format 'xml'"), ("text", "loud", "unknown log level 'loud'")],
)
def test_unknown_format_or_level_is_refused(fmt, level, words) -> None:
    with pytest.raises(ValueError, match=words):
        configure_logging(fmt, level, stream=io.StringIO())
