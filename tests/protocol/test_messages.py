from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import BAD_REQUEST, BadRequest
from protocol.messages import NO_ID, decode_request, error_message, ok_message


@pytest.mark.parametrize("word", ["ping", "health", "stats", "help", "subscribe", "  ping \r"])
def test_a_bare_word_reads_as_an_op(word):
    assert decode_request(word.encode()) == {"op": word.strip()}


@pytest.mark.parametrize(
    "line, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b'{"id": 1}', 'no "op"'),
        (b'{"op": 5}', '"op" must be a string'),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100000, "JSON"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(line, fragment):
    for loads in (json.loads, orjson.loads):
        with pytest.raises(BadRequest) as info:
            decode_request(line, loads)
        assert fragment in info.value.message
        assert info.value.code == BAD_REQUEST


def test_a_request_without_op_keeps_its_id_for_the_error():
    with pytest.raises(BadRequest) as info:
        decode_request(b'{"id": "abc", "flag": "x"}')
    assert info.value.request_id == "abc"


def test_envelopes_echo_the_id_only_when_given():
    assert ok_message(NO_ID, {"a": 1}) == {"ok": True, "result": {"a": 1}}
    assert ok_message(None, {}) == {"id": None, "ok": True, "result": {}}
    assert error_message(7, "X", "m") == {"id": 7, "ok": False, "error": {"code": "X", "message": "m"}}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_either_decode_to_an_object_with_a_string_op_or_raise_bad_request(line):
    try:
        msg = decode_request(line, orjson.loads)
    except BadRequest as exc:
        assert exc.message
    else:
        assert isinstance(msg, dict) and isinstance(msg["op"], str)
