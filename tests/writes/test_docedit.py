"""Editing the decoded document: format, key order and layout kept; the flagd form of a simple
flag answers exactly like the simple flag."""

from __future__ import annotations

import json

import pytest

from agent.writes.docedit import (
    SetChange,
    apply_delete,
    apply_set,
    detect_layout,
    encode,
    flagd_equivalent,
    simple_state,
)
from agent.engine.evaluate import evaluate
from agent.engine.formats.document import parse_flag_document
from protocol.errors import FlagNotFound, InvalidFlag


def edit_text(text: str, change: SetChange, fractional: str = "v2") -> str:
    doc = json.loads(text)
    return encode(apply_set(doc, change, fractional=fractional, where="f.json"), detect_layout(text)).decode()


@pytest.mark.parametrize("indent", [2, 4, "\t"])
def test_layout_is_detected_and_kept(indent):
    text = json.dumps({"flags": {"a": {"enabled": True}}}, indent=indent) + "\n"
    out = edit_text(text, SetChange("b", simple={"enabled": False}))
    assert out == json.dumps({"flags": {"a": {"enabled": True}, "b": {"enabled": False}}}, indent=indent) + "\n"


def test_one_line_file_stays_one_line_and_without_final_newline():
    out = edit_text('{"flags": {"a": {"enabled": true}}}', SetChange("a", simple={"enabled": False}))
    assert out == '{"flags": {"a": {"enabled": false}}}'


def test_existing_keys_keep_their_place_and_new_flags_are_appended():
    doc = {"flags": {"z": {"enabled": True}, "a": {"rollout_percentage": 5, "enabled": True, "description": "d"}}}
    out = json.loads(edit_text(json.dumps(doc, indent=2), SetChange("a", simple={"enabled": False, "allowed_users": ["u"]})))
    assert list(out["flags"]) == ["z", "a"]
    assert list(out["flags"]["a"].items()) == [("rollout_percentage", 5), ("enabled", False), ("description", "d"),
                                               ("allowed_users", ["u"])]
    out = json.loads(edit_text(json.dumps(doc), SetChange("new", simple={"enabled": True})))
    assert list(out["flags"]) == ["z", "a", "new"]


def test_simple_patch_keeps_the_fields_not_given_and_the_files_own_words():
    doc = {"flags": {"a": {"name": "a", "enabled": True, "rollout": 10, "allowed_users": ["x"]}}}
    out = json.loads(edit_text(json.dumps(doc), SetChange("a", simple={"enabled": True, "rollout_percentage": 40})))
    assert out["flags"]["a"] == {"name": "a", "enabled": True, "rollout": 40, "allowed_users": ["x"]}


def test_new_simple_flag_gets_a_name_when_its_siblings_have_one():
    doc = {"flags": {"a": {"name": "a", "enabled": True}}}
    out = json.loads(edit_text(json.dumps(doc), SetChange("b", simple={"enabled": False})))
    assert out["flags"]["b"] == {"name": "b", "enabled": False}


def test_flat_simple_file_takes_simple_fields_but_not_a_definition():
    doc = {"a": {"enabled": True}}
    assert json.loads(edit_text(json.dumps(doc), SetChange("b", simple={"enabled": True}))) == {
        "a": {"enabled": True}, "b": {"enabled": True}}
    with pytest.raises(InvalidFlag, match="top level"):
        apply_set(doc, SetChange("b", definition={"state": "ENABLED", "variants": {"x": 1}}), fractional="v2", where="f")


def test_definition_in_a_simple_file_is_written_in_flagd_form_next_to_the_others():
    doc = {"flags": {"a": {"enabled": True}}}
    definition = {"state": "ENABLED", "variants": {"x": 1, "y": 2}, "defaultVariant": "y"}
    out = apply_set(doc, SetChange("n", definition=definition), fractional="v2", where="f")
    assert out == {"flags": {"a": {"enabled": True}, "n": definition}}
    assert doc == {"flags": {"a": {"enabled": True}}}, "the input document must not be changed"


def test_array_form_is_edited_in_place_with_the_key():
    doc = {"flags": [{"key": "a", "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
                     {"key": "b", "state": "DISABLED", "variants": {"v": 1}, "defaultVariant": "v"}]}
    out = apply_set(doc, SetChange("a", simple={"enabled": False}), fractional="v2", where="f")
    assert [f["key"] for f in out["flags"]] == ["a", "b"]
    assert out["flags"][0] == {"key": "a", "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    out = apply_set(doc, SetChange("c", definition={"state": "ENABLED", "variants": {"v": "x"}, "defaultVariant": "v"}),
                    fractional="v2", where="f")
    assert out["flags"][2] == {"key": "c", "state": "ENABLED", "variants": {"v": "x"}, "defaultVariant": "v"}
    assert [f["key"] for f in apply_delete(doc, "a", where="f")["flags"]] == ["b"]


def test_delete_of_a_missing_flag_names_the_file():
    with pytest.raises(FlagNotFound, match="'nope' is not in f.json"):
        apply_delete({"flags": {"a": {"enabled": True}}}, "nope", where="f.json")


def test_simple_fields_refuse_to_turn_a_string_flag_into_a_boolean():
    doc = {"flags": {"s": {"state": "ENABLED", "variants": {"a": "x", "b": "y"}, "defaultVariant": "a"}}}
    with pytest.raises(InvalidFlag, match="non-boolean variants"):
        apply_set(doc, SetChange("s", simple={"enabled": True}), fractional="v2", where="f")


@pytest.mark.parametrize("version", ["v1", "v3"])
def test_partial_rollout_in_flagd_form_under_other_bucketing_is_refused(version):
    with pytest.raises(InvalidFlag, match=f"fractional {version}"):
        flagd_equivalent("f", True, 30, [], fractional=version)
    assert flagd_equivalent("f", True, 100, [], fractional=version)["defaultVariant"] == "on"


def test_flagd_form_is_read_back_for_the_next_patch():
    for enabled, pct, users in [(True, 30, ["a", "b"]), (True, 0, ["a"]), (True, None, []), (True, 99.5, [])]:
        flag = flagd_equivalent("f", enabled, pct, users, fractional="v2")
        state = simple_state(flag)
        expected_pct = None if pct is None else -(-pct // 1)
        assert state == {"enabled": True, "rollout_percentage": expected_pct, "allowed_users": users}
    assert simple_state({"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on",
                         "targeting": {"==": [1, 1]}}) is None


def _answers(doc: dict, key: str, contexts: list) -> list:
    flags = parse_flag_document(json.dumps(doc).encode(), "f.json").flags
    out = []
    for ctx in contexts:
        res = evaluate(flags, key, ctx)
        out.append((res.value, res.variant, res.reason))
    return out


CONTEXTS = [None, {}, {"targetingKey": ""}, {"targetingKey": 17}, {"targetingKey": "alice"}, {"targetingKey": "bob"}] + [
    {"targetingKey": f"user-{i}"} for i in range(400)]


@pytest.mark.parametrize("enabled,pct,users", [
    (True, 25, ["alice", "user-3"]), (True, 25.5, []), (True, 0, ["bob"]), (True, 0, []), (True, 100, ["x"]),
    (True, None, ["x"]), (False, 50, ["alice"]), (True, 99.2, ["", "alice"]), (True, 1, []), (True, 0.01, []),
])
def test_flagd_equivalent_answers_exactly_like_the_simple_flag(enabled, pct, users):
    key = "checkout"
    simple = {"flags": {key: {"enabled": enabled, "rollout_percentage": pct, "allowed_users": users}}}
    flagd = {"flags": {key: flagd_equivalent(key, enabled, pct, users, fractional="v2")}}
    assert _answers(flagd, key, CONTEXTS) == _answers(simple, key, CONTEXTS)
