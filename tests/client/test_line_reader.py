"""The client's own line reader frames exactly as the agent's framing core does.

protocol/client.py must stay one standard-library file that people copy, so it cannot import
protocol/framing.py and carries a small reader of its own (its module docstring says why).
These tests hold the two to the same rules: the same bytes, cut anywhere, give the same lines.
They also check the client's measure of JSON nesting, which decides what "too deep" means.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import client as fc
from protocol.framing import LINE_TOO_LONG, LineDecoder

TOO_LONG = "too long"


def framed(decoder: Any, chunks: list[bytes], too_long: Any, limit: int) -> list[Any]:
    """Feed every chunk; the events, with the decoder's too-long mark as TOO_LONG."""
    out: list[Any] = []
    for chunk in chunks:
        out.extend(TOO_LONG if event is too_long else event for event in decoder.feed(chunk))
        held = decoder.buffered if isinstance(decoder, LineDecoder) else len(decoder._buf)
        assert held <= limit + 1  # never more than one line's worth is held
    return out


def both(chunks: list[bytes], limit: int) -> tuple[list[Any], list[Any]]:
    agent = framed(LineDecoder(limit), chunks, LINE_TOO_LONG, limit)
    client = framed(fc._LineReader(limit), chunks, fc._TOO_LONG, limit)
    return agent, client


# Bytes that matter to framing, and a few that do not.
PIECES = st.sampled_from([b"\n", b"\r", b" ", b"\t", b"\r\n", b"a", b"{}", b"xyz", b"\xff"])


@settings(max_examples=500, deadline=None)
@given(
    pieces=st.lists(PIECES, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    limit=st.integers(min_value=1, max_value=12),
)
def test_the_client_reader_and_the_framing_core_agree_on_any_bytes_cut_anywhere(pieces, cuts, limit) -> None:
    data = b"".join(pieces)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]
    agent, client = both(chunks, limit)
    assert client == agent


@pytest.mark.parametrize(
    ("chunks", "limit", "expected"),
    [
        ([b'{"ok":true}\n'], 100, [b'{"ok":true}']),
        ([b"\n \t\r\n\r\nping", b"\n"], 100, [b"ping"]),
        ([b"x" * 10, b"x" * 10, b"x" * 1000, b"xx\nping\n"], 16, [TOO_LONG, b"ping"]),
        ([b"123456789\n12345678\n"], 8, [TOO_LONG, b"12345678"]),
        ([b"abcd\r", b"\n"], 4, [b"abcd"]),
        ([b"abcde\r\n"], 4, [TOO_LONG]),
        ([b"     ", b"   \n"], 4, [TOO_LONG]),  # a blank line is held to the limit too
    ],
    ids=["one line", "blank lines", "long line then more", "long line in one chunk", "CR at the limit", "CR past the limit", "long blank line"],
)
def test_the_framing_rules_by_example(chunks: list[bytes], limit: int, expected: list[Any]) -> None:
    agent, client = both(chunks, limit)
    assert agent == expected
    assert client == expected


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fc._LineReader(0)
    with pytest.raises(ValueError, match="max_line_bytes"):
        fc.FlagClient("/nonexistent.sock", max_line_bytes=0)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


# Strings full of what could confuse a bracket count: brackets, quotes and backslashes.
TRICKY_TEXT = st.text(alphabet='[]{}"\\ab\u00e9\n', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(value=JSON_VALUES, ascii_only=st.booleans())
def test_nesting_is_measured_as_the_decoder_would_nest(value: Any, ascii_only: bool) -> None:
    line = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert fc._nesting(line) == depth_of(value)
