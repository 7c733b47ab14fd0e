from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.framing import LINE_TOO_LONG, LineDecoder


def feed_all(decoder: LineDecoder, chunks) -> list:
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def test_lines_come_out_whole_however_the_bytes_are_split():
    data = b'{"op":"ping"}\n{"op":"health"}\r\nstats\n'
    for size in range(1, len(data) + 1):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert feed_all(LineDecoder(), chunks) == [b'{"op":"ping"}', b'{"op":"health"}', b"stats"]


def test_blank_lines_are_skipped_and_a_partial_line_waits():
    d = LineDecoder()
    assert d.feed(b"\n \t\r\n\r\nping") == []
    assert d.buffered == 4
    assert d.feed(b"\n") == [b"ping"]


def test_a_long_line_is_reported_once_and_the_next_line_still_works():
    d = LineDecoder(max_line_bytes=16)
    assert d.feed(b"x" * 10) == []
    assert d.feed(b"x" * 10) == [LINE_TOO_LONG]
    assert d.feed(b"x" * 1000) == []  # still discarding, nothing held
    assert d.buffered == 0
    assert d.feed(b"xx\nping\n") == [b"ping"]


def test_a_long_line_arriving_in_one_chunk_is_refused():
    d = LineDecoder(max_line_bytes=8)
    assert d.feed(b"123456789\n12345678\n") == [LINE_TOO_LONG, b"12345678"]


def test_a_carriage_return_does_not_count_against_the_limit():
    d = LineDecoder(max_line_bytes=4)
    assert d.feed(b"abcd\r") == []
    assert d.feed(b"\n") == [b"abcd"]


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        LineDecoder(0)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
    limit=st.integers(min_value=1, max_value=50),
)
def test_any_bytes_any_split_gives_one_event_per_line_and_bounded_memory(lines, cuts, limit):
    data = b"".join(line + b"\n" for line in lines)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    d = LineDecoder(max_line_bytes=limit)
    events = []
    for chunk in chunks:
        events.extend(d.feed(chunk))
        assert d.buffered <= limit + 1 + 0  # never more than one line's worth is held
    expected = []
    for line in lines:
        body = line[:-1] if line.endswith(b"\r") else line
        if len(body) > limit:
            expected.append(LINE_TOO_LONG)
        elif body.strip(b" \t\r"):
            expected.append(body)
    assert events == expected
