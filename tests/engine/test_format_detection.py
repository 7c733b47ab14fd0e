"""One decision of "is this simple or flagd?", asked by the loader, the writer and ``set``.

Issue 12: ``{"$evaluators": {}, "flags": {...simple...}}`` was simple to the loader and flagd to
the writer. The write side of that document is in tests/writes/test_format_agreement.py.
"""

from __future__ import annotations

import json

import pytest

from agent.engine.formats.detect import document_format, flag_kind
from agent.engine.formats.document import parse_flag_document
from agent.writes.docedit import SetChange, apply_set

SIMPLE_FLAG = {"enabled": True, "rollout_percentage": 30}
FLAGD_FLAG = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}

DOCUMENTS = [
    ({"$evaluators": {}, "flags": {"a": SIMPLE_FLAG}}, "simple"),
    ({"$evaluators": {"r": {"==": [1, 1]}}, "flags": {"a": SIMPLE_FLAG}}, "flagd"),
    ({"flags": {"a": SIMPLE_FLAG}}, "simple"),
    ({"flags": {"a": SIMPLE_FLAG, "b": FLAGD_FLAG}}, "flagd"),
    ({"flags": {"b": FLAGD_FLAG}}, "flagd"),
    ({"flags": [{"key": "b", **FLAGD_FLAG}]}, "flagd"),
    ({"flags": {}}, "simple"),
    ({"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {}}, "flagd"),
    ({"metadata": {"flagSetId": "x"}, "flags": {"a": SIMPLE_FLAG}}, "simple"),
    ({"a": SIMPLE_FLAG}, "simple-flat"),
]


@pytest.mark.parametrize(("doc", "expected"), DOCUMENTS)
def test_the_loader_reports_the_one_decision(doc, expected):
    assert document_format(doc) == expected
    assert parse_flag_document(json.dumps(doc).encode(), "f.json").format == expected


@pytest.mark.parametrize(("doc", "expected"), DOCUMENTS)
def test_the_writer_keeps_a_document_in_the_format_the_loader_reports(doc, expected):
    # A new flag from the simple fields is written simple exactly where the loader says "simple".
    new = apply_set(doc, SetChange("new_flag", simple={"enabled": True}), fractional="v2", where="f.json")
    container = new if expected == "simple-flat" else new["flags"]
    added = container[-1] if isinstance(container, list) else container["new_flag"]
    assert flag_kind(added) == ("flagd" if expected == "flagd" else "simple")
    reparsed = parse_flag_document(json.dumps(new).encode(), "f.json")
    assert reparsed.format == expected


@pytest.mark.parametrize(("raw", "kind"), [
    ({"enabled": True}, "simple"), ({"allowed_users": []}, "simple"), ({"rollout": 5}, "simple"),
    ({"enabled": True, "state": "ENABLED"}, "flagd"), ({"enabled": True, "variants": {}}, "flagd"),
    ({}, "flagd"), ({"description": "x"}, "flagd"), ([], "flagd"), (None, "flagd"),
])
def test_a_flag_s_kind_is_read_from_its_own_keys(raw, kind):
    assert flag_kind(raw) == kind
