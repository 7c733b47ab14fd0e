"""Reading flag files: formats, strict validation with JSON paths, reject and isolate."""

from __future__ import annotations

import json

import pytest

from agent.engine.evaluate import evaluate
from agent.engine.formats.document import FlagFileError, parse_flag_document
from tests.helpers import SEED


BOOL_FLAG = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}


def parse(doc, **kwargs):
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_flag_document(data, "flags.json", **kwargs)


def refusal(doc, **kwargs) -> list[tuple[str, str]]:
    with pytest.raises(FlagFileError) as info:
        parse(doc, **kwargs)
    return [(p.path, p.message) for p in info.value.problems]


# --- formats ---------------------------------------------------------------------------------

def test_simple_nested_format_is_detected_and_compiled():
    parsed = parse(SEED)
    assert parsed.format == "simple"
    assert set(parsed.flags) == set(SEED["flags"])
    assert parsed.flags["dark_mode"].value_type == "boolean"
    assert dict(parsed.flags["dark_mode"].variants) == {"on": True, "off": False}
    assert parsed.problems == ()


def test_simple_flat_format_is_detected():
    parsed = parse({"dark_mode": {"enabled": True, "rollout": 50}, "beta": {"enabled": False}})
    assert parsed.format == "simple-flat"
    assert set(parsed.flags) == {"dark_mode", "beta"}


def test_flat_format_allows_a_schema_key():
    parsed = parse({"$schema": "x", "dark_mode": {"enabled": True}})
    assert set(parsed.flags) == {"dark_mode"}


def test_empty_object_is_an_empty_flat_file():
    parsed = parse({})
    assert parsed.format == "simple-flat"
    assert dict(parsed.flags) == {}


def test_flagd_map_format_is_detected():
    parsed = parse({"flags": {"b": BOOL_FLAG}})
    assert parsed.format == "flagd"
    assert parsed.flags["b"].default_variant == "on"
    assert parsed.flags["b"].enabled is True


def test_flagd_array_form_is_accepted():
    parsed = parse({"flags": [dict(BOOL_FLAG, key="a"), dict(BOOL_FLAG, key="b")]})
    assert parsed.format == "flagd"
    assert set(parsed.flags) == {"a", "b"}


def test_array_form_refuses_an_item_without_key_and_a_duplicate_key():
    problems = refusal({"flags": [dict(BOOL_FLAG), dict(BOOL_FLAG, key="a"), dict(BOOL_FLAG, key="a")]})
    assert ("$.flags[0].key", 'each flag of the array must be a non-empty string "key"') in problems
    assert any(path == "$.flags[2].key" and "duplicate flag key 'a'" in msg for path, msg in problems)


def test_a_flags_map_may_mix_simple_and_flagd_flags():
    parsed = parse({"flags": {"simple": {"enabled": True}, "rich": BOOL_FLAG}})
    assert parsed.format == "flagd"
    assert parsed.flags["simple"].format == "simple"
    assert parsed.flags["rich"].format == "flagd"


def test_value_types_follow_the_variants():
    parsed = parse({"flags": {
        "s": {"state": "ENABLED", "variants": {"a": "x"}},
        "i": {"state": "ENABLED", "variants": {"a": 1, "b": 2}},
        "f": {"state": "ENABLED", "variants": {"a": 1, "b": 2.5}},
        "o": {"state": "ENABLED", "variants": {"a": {"k": [1]}}},
    }})
    assert {k: f.value_type for k, f in parsed.flags.items()} == {"s": "string", "i": "integer", "f": "float", "o": "object"}


def test_flag_metadata_is_merged_over_the_files():
    parsed = parse({"metadata": {"team": "web", "version": "1"},
                    "flags": {"b": dict(BOOL_FLAG, metadata={"team": "growth", "tier": 2})}})
    assert dict(parsed.flags["b"].metadata) == {"team": "growth", "version": "1", "tier": 2}
    assert dict(parsed.metadata) == {"team": "web", "version": "1"}


def test_null_absent_and_empty_targeting_mean_static():
    for targeting in ({"targeting": None}, {}, {"targeting": {}}):
        parsed = parse({"flags": {"b": dict(BOOL_FLAG, **targeting)}})
        assert evaluate(parsed.flags, "b", {}).reason == "STATIC"


def test_null_and_absent_default_variant_are_accepted():
    parsed = parse({"flags": {"n": dict(BOOL_FLAG, defaultVariant=None),
                              "a": {"state": "ENABLED", "variants": {"on": True}}}})
    assert parsed.flags["n"].default_variant is None
    assert parsed.flags["a"].default_variant is None


def test_document_is_the_decoded_json_and_variants_are_read_only():
    parsed = parse({"flags": {"b": BOOL_FLAG, "o": {"state": "ENABLED", "variants": {"x": {"a": [1]}},
                                                    "defaultVariant": "x"}}})
    assert parsed.document["flags"]["b"] == BOOL_FLAG
    assert parsed.flags["b"].variants == BOOL_FLAG["variants"]
    with pytest.raises(TypeError):
        parsed.flags["b"].variants["on"] = False
    with pytest.raises(TypeError):
        parsed.flags["o"].variants["x"]["a"].append(2)
    with pytest.raises(TypeError):
        parsed.flags["x"] = parsed.flags["b"]


def test_a_leading_byte_order_mark_is_tolerated():
    assert set(parse(b"\xef\xbb\xbf" + json.dumps(SEED).encode()).flags) == set(SEED["flags"])


# --- refusals of the whole file ---------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"  \n\t"])
def test_empty_file_is_refused(data):
    assert refusal(data) == [("$", "file is empty")]


def test_invalid_json_is_refused_with_line_and_column():
    [(path, message)] = refusal(b'{\n  "flags": {\n    "a": ,\n  }\n}')
    assert path == "$"
    assert message.startswith("not valid JSON at line 3, column 10")


@pytest.mark.parametrize("doc", [[], "flags", 3, None])
def test_a_document_that_is_not_an_object_is_refused(doc):
    [(path, message)] = refusal(doc)
    assert path == "$" and message.startswith("a flag file must be a JSON object")


def test_an_unrecognisable_object_is_not_a_flag_file():
    [(path, message)] = refusal({"name": "x", "values": [1, 2]}, invalid_flags="isolate")
    assert path == "$" and message.startswith("not a flag file")


def test_flags_of_the_wrong_type_is_refused_even_when_isolating():
    assert refusal({"flags": "dark_mode"}, invalid_flags="isolate") == [
        ("$.flags", 'must be an object of flags by key, or an array of flags with a "key"; got a string')]


def test_invalid_file_metadata_is_refused_even_when_isolating():
    problems = refusal({"flags": {"b": BOOL_FLAG}, "metadata": {"bad": {"k": 1}, "version": 2}},
                       invalid_flags="isolate")
    assert ("$.metadata.bad", "a metadata value must be a string, number or boolean, got an object") in problems
    assert ("$.metadata.version", "must be a string, got 2") in problems


def test_error_text_is_one_line_per_problem_naming_file_and_path():
    with pytest.raises(FlagFileError) as info:
        parse({"flags": {"dark_mode": {"enabled": True, "rollout_percentage": 150}}})
    assert str(info.value) == "flags.json: $.flags.dark_mode.rollout_percentage: must be a number from 0 to 100, got 150"


# --- validation of flags -------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "path", "message"), [
    ({"enabled": "yes"}, "$.flags.f.enabled", 'must be true or false, got "yes"'),
    ({"enabled": 1}, "$.flags.f.enabled", "must be true or false, got 1"),
    ({"enabled": True, "rollout_percentage": -1}, "$.flags.f.rollout_percentage", "must be a number from 0 to 100, got -1"),
    ({"enabled": True, "rollout_percentage": True}, "$.flags.f.rollout_percentage", "must be a number from 0 to 100, got true"),
    ({"enabled": True, "rollout": "50"}, "$.flags.f.rollout", 'must be a number from 0 to 100, got "50"'),
    ({"enabled": True, "allowed_users": "u1"}, "$.flags.f.allowed_users", "must be an array of user ids (strings), got a string"),
    ({"enabled": True, "allowed_users": ["u1", 7]}, "$.flags.f.allowed_users[1]", "a user id must be a string, got 7"),
    ({"enabled": True, "name": "other"}, "$.flags.f.name", "must equal the flag key 'f' (or be left out), got 'other'"),
    ({"enabled": True, "rollout": 5, "rollout_percentage": 5}, "$.flags.f.rollout", "give rollout_percentage or rollout, not both"),
    ({"enabled": True, "description": 3}, "$.flags.f.description", "must be a string, got 3"),
])
def test_simple_flag_rules_name_the_path_and_the_rule(flag, path, message):
    assert (path, message) in refusal({"flags": {"f": flag}})


def test_simple_flag_refuses_unknown_keys():
    [(path, message)] = refusal({"flags": {"f": {"enabled": True, "rollout_pct": 5}}})
    assert path == "$.flags.f.rollout_pct"
    assert message.startswith("unknown key; allowed keys are enabled, rollout_percentage")


def test_simple_flag_needs_enabled():
    assert refusal({"flags": {"f": {"rollout": 5}}}) == [("$.flags.f.enabled", "is required")]


@pytest.mark.parametrize(("change", "path", "message"), [
    ({"state": "ON"}, "$.flags.f.state", 'must be "ENABLED" or "DISABLED", got "ON"'),
    ({"variants": {}}, "$.flags.f.variants", "must name at least one variant"),
    ({"variants": []}, "$.flags.f.variants", "variants must be an object, got an array"),
    ({"variants": {"on": True, "off": "false"}}, "$.flags.f.variants.off",
     "variant values must all be of one type: 'on' is a boolean, 'off' is a string"),
    ({"variants": {"on": True, "off": None}}, "$.flags.f.variants.off",
     "a variant value must be a boolean, string, number or object, got null"),
    ({"defaultVariant": "maybe"}, "$.flags.f.defaultVariant", "must name one of the variants (on, off) or be null, got 'maybe'"),
    ({"defaultVariant": True}, "$.flags.f.defaultVariant", "must be a string, got true"),
    ({"metadata": {"owner": ["a"]}}, "$.flags.f.metadata.owner", "a metadata value must be a string, number or boolean, got an array"),
    ({"targeting": "on"}, "$.flags.f.targeting", "a targeting rule must be an object, got a string"),
])
def test_flagd_flag_rules_name_the_path_and_the_rule(change, path, message):
    assert (path, message) in refusal({"flags": {"f": dict(BOOL_FLAG, **change)}})


def test_flagd_flag_without_state_or_variants_is_refused():
    problems = refusal({"flags": {"not-a-flag": {}}})
    assert ("$.flags.not-a-flag.state", "is required") in problems
    assert ("$.flags.not-a-flag.variants", "is required") in problems


def test_a_flag_that_is_not_an_object_is_refused():
    assert refusal({"flags": {"f": True}}) == [("$.flags.f", "a flag must be an object, got a boolean")]


def test_an_empty_flag_key_is_refused():
    assert refusal({"flags": {"": BOOL_FLAG}}) == [("$.flags['']", "a flag key must not be empty")]


def test_odd_flag_keys_are_quoted_in_paths():
    [(path, _)] = refusal({"flags": {"my flag": dict(BOOL_FLAG, state="X")}})
    assert path == "$.flags['my flag'].state"


def test_a_missing_evaluator_breaks_the_flag_that_refers_to_it():
    problems = refusal({"flags": {"f": dict(BOOL_FLAG, targeting={"if": [{"$ref": "nope"}, "on", "off"]})}})
    assert len(problems) == 1 and problems[0][0].startswith("$.flags.f.targeting")


def test_reject_mode_lists_every_broken_flag():
    with pytest.raises(FlagFileError) as info:
        parse({"flags": {"a": {"enabled": "no"}, "ok": {"enabled": True}, "b": dict(BOOL_FLAG, state="on")}})
    assert {p.flag for p in info.value.problems} == {"a", "b"}


# --- isolate ---------------------------------------------------------------------------------------

def test_isolate_mode_loads_good_flags_and_broken_ones_answer_parse_error():
    parsed = parse({"flags": {"a": {"enabled": "no"}, "ok": {"enabled": True}}}, invalid_flags="isolate")
    assert [(p.flag, p.path) for p in parsed.problems] == [("a", "$.flags.a.enabled")]
    assert evaluate(parsed.flags, "ok", {}).value is True
    res = evaluate(parsed.flags, "a", {}, default=False)
    assert (res.reason, res.error_code, res.value, res.variant) == ("ERROR", "PARSE_ERROR", False, None)
    assert "$.flags.a.enabled: must be true or false" in res.error_message
    assert parsed.flags["a"].broken and not parsed.flags["ok"].broken


def test_isolate_mode_reports_an_unused_broken_evaluator_without_refusing():
    parsed = parse({"flags": {"b": BOOL_FLAG}, "$evaluators": {"bad": {"no-such-op": [1]}}}, invalid_flags="isolate")
    assert parsed.problems and parsed.problems[0].path.startswith("$.$evaluators.bad")
    assert parsed.problems[0].flag is None
    assert evaluate(parsed.flags, "b", {}).value is True


def test_parse_refuses_unknown_options():
    with pytest.raises(ValueError):
        parse(SEED, fractional="v4")
    with pytest.raises(ValueError):
        parse(SEED, invalid_flags="warn")


# --- fingerprints ----------------------------------------------------------------------------------

def test_fingerprint_ignores_key_order_and_layout():
    a = parse({"flags": {"b": BOOL_FLAG}}).flags["b"]
    b = parse(b'{"flags": {"b": {"defaultVariant": "on", "variants": {"off": false, "on": true},\n "state": "ENABLED"}}}').flags["b"]
    assert a.fingerprint == b.fingerprint and a == b


def test_fingerprint_changes_with_the_effective_definition():
    base = parse({"flags": {"b": BOOL_FLAG}}).flags["b"]
    assert parse({"flags": {"b": dict(BOOL_FLAG, defaultVariant="off")}}).flags["b"] != base
    assert parse({"metadata": {"team": "x"}, "flags": {"b": BOOL_FLAG}}).flags["b"] != base
    ref = {"flags": {"b": dict(BOOL_FLAG, targeting={"$ref": "r"})}}
    one = parse(dict(ref, **{"$evaluators": {"r": {"==": [1, 1]}}})).flags["b"]
    two = parse(dict(ref, **{"$evaluators": {"r": {"==": [1, 2]}}})).flags["b"]
    assert one.fingerprint != two.fingerprint


def test_fingerprint_tells_1_from_1_point_0_and_true():
    flags = [parse({"flags": {"n": {"state": "ENABLED", "variants": {"a": v}}}}).flags["n"] for v in (1, 1.0, True)]
    assert len({f.fingerprint for f in flags}) == 3
