"""Evaluation semantics: flagd's reasons, variants, error codes and type rules."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest

from agent.engine.evaluate import NO_DEFAULT, evaluate
from agent.engine.tables import targeting_resolver
from agent.engine.formats.document import parse_flag_document
from agent.engine.model import CompiledFlag, FrozenDict
from agent.engine.rules import compile_targeting


def flags_of(doc: dict):
    return parse_flag_document(json.dumps(doc).encode(), "t.json").flags


def ruled(rule, variants, default_variant=None, metadata=FrozenDict()):
    """A flag whose targeting is the Python callable ``rule`` (the rules compiler is tested elsewhere)."""
    variants = FrozenDict(variants)
    flag = CompiledFlag(
        key="f", value_type=None, variants=variants, default_variant=default_variant, metadata=metadata,
        enabled=True, source="t.json", format="flagd", fingerprint=b"x", static=None,
        resolver=targeting_resolver("f", rule, variants, default_variant, metadata),
    )
    return MappingProxyType({"f": flag})


STATIC_DOC = {"flags": {
    "b": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on",
          "metadata": {"owner": "web"}},
    "i": {"state": "ENABLED", "variants": {"one": 1, "ten": 10}, "defaultVariant": "ten"},
    "f": {"state": "ENABLED", "variants": {"half": 0.5, "two": 2.0}, "defaultVariant": "half"},
    "s": {"state": "ENABLED", "variants": {"hi": "hi"}, "defaultVariant": "hi"},
    "o": {"state": "ENABLED", "variants": {"t": {"rows": [1, 2]}}, "defaultVariant": "t"},
    "nodefault": {"state": "ENABLED", "variants": {"on": True}},
    "off": {"state": "DISABLED", "variants": {"on": True}, "defaultVariant": "on", "metadata": {"m": 1}},
}}


def test_static_flag_answers_its_default_variant_with_reason_static():
    res = evaluate(flags_of(STATIC_DOC), "b", None)
    assert (res.key, res.value, res.variant, res.reason, res.error_code) == ("b", True, "on", "STATIC", None)
    assert dict(res.metadata) == {"owner": "web"}


def test_unknown_flag_is_flag_not_found_with_the_callers_default():
    res = evaluate(flags_of(STATIC_DOC), "nope", None, default="d")
    assert (res.value, res.variant, res.reason, res.error_code) == ("d", None, "ERROR", "FLAG_NOT_FOUND")
    assert "nope" in res.error_message


def test_unknown_flag_without_default_has_no_value():
    assert evaluate(flags_of(STATIC_DOC), "nope", None).value is NO_DEFAULT


def test_no_default_variant_answers_the_callers_default_with_reason_default():
    res = evaluate(flags_of(STATIC_DOC), "nodefault", {}, default=False)
    assert (res.value, res.variant, res.reason, res.error_code) == (False, None, "DEFAULT", None)
    assert evaluate(flags_of(STATIC_DOC), "nodefault", {}).value is NO_DEFAULT


def test_disabled_flag_answers_the_callers_default_with_reason_disabled():
    res = evaluate(flags_of(STATIC_DOC), "off", {}, expected_type="string", default="x")
    assert (res.value, res.variant, res.reason, res.error_code) == ("x", None, "DISABLED", None)
    assert dict(res.metadata) == {"m": 1}


@pytest.mark.parametrize(("key", "expected_type", "value"), [
    ("b", "boolean", True), ("i", "integer", 10), ("f", "float", 0.5), ("s", "string", "hi"),
    ("o", "object", {"rows": [1, 2]}), ("i", "float", 10.0),
])
def test_matching_requested_types_resolve(key, expected_type, value):
    res = evaluate(flags_of(STATIC_DOC), key, {}, expected_type=expected_type)
    assert res.error_code is None
    assert res.value == value and (isinstance(value, dict) or type(res.value) is type(value))


@pytest.mark.parametrize(("key", "expected_type"), [
    ("b", "integer"), ("b", "float"), ("b", "string"), ("i", "boolean"), ("i", "string"),
    ("f", "integer"), ("s", "integer"), ("s", "object"), ("o", "string"),
])
def test_other_requested_types_are_type_mismatch(key, expected_type):
    res = evaluate(flags_of(STATIC_DOC), key, {}, expected_type=expected_type, default="d")
    assert (res.value, res.variant, res.reason, res.error_code) == ("d", None, "ERROR", "TYPE_MISMATCH")
    assert expected_type in res.error_message


def test_answers_without_a_variant_are_not_type_checked():
    assert evaluate(flags_of(STATIC_DOC), "off", {}, expected_type="integer").error_code is None
    assert evaluate(flags_of(STATIC_DOC), "nodefault", {}, expected_type="string").error_code is None


def test_an_unknown_expected_type_is_a_programming_error():
    with pytest.raises(ValueError):
        evaluate(flags_of(STATIC_DOC), "b", {}, expected_type="bool")
    with pytest.raises(ValueError):
        evaluate(ruled(lambda ctx: None, {"a": 1}), "f", {}, expected_type="int")


def test_object_values_are_read_only():
    value = evaluate(flags_of(STATIC_DOC), "o", {}).value
    with pytest.raises(TypeError):
        value["rows"] = []
    with pytest.raises(TypeError):
        value["rows"].append(3)


@pytest.mark.parametrize(("result", "variant"), [(True, "true"), (False, "false"), ("b", "b"), (1, "1")])
def test_targeting_result_selects_a_variant_by_name(result, variant):
    flags = ruled(lambda ctx: result, {"true": 1, "false": 0, "b": 2, "1": 3}, "b")
    res = evaluate(flags, "f", {})
    assert (res.variant, res.reason, res.error_code) == (variant, "TARGETING_MATCH", None)


def test_targeting_null_falls_back_to_the_default_variant_with_reason_default():
    res = evaluate(ruled(lambda ctx: None, {"a": 1, "b": 2}, "b"), "f", {})
    assert (res.value, res.variant, res.reason) == (2, "b", "DEFAULT")


def test_targeting_null_without_default_variant_is_the_callers_default():
    res = evaluate(ruled(lambda ctx: None, {"a": 1}), "f", {}, default=7)
    assert (res.value, res.variant, res.reason, res.error_code) == (7, None, "DEFAULT", None)


def test_targeting_choosing_an_undefined_variant_is_general_error():
    res = evaluate(ruled(lambda ctx: "c", {"a": 1, "b": 2}, "a"), "f", {}, default=0)
    assert (res.value, res.variant, res.reason, res.error_code) == (0, None, "ERROR", "GENERAL")
    assert "'c'" in res.error_message


def test_a_rule_that_raises_is_parse_error_for_that_flag():
    def broken(ctx):
        raise ZeroDivisionError("boom")

    res = evaluate(ruled(broken, {"a": 1}, "a"), "f", {}, default=0)
    assert (res.value, res.reason, res.error_code) == (0, "ERROR", "PARSE_ERROR")
    assert "boom" in res.error_message


def test_targeting_match_is_type_checked():
    res = evaluate(ruled(lambda ctx: "a", {"a": 1}, "a"), "f", {}, expected_type="string")
    assert res.error_code == "TYPE_MISMATCH"


def test_rules_see_flagd_properties_and_a_targeting_key_without_changing_the_context():
    seen = []
    flags = ruled(lambda ctx: seen.append(ctx) or None, {"a": 1}, "a")
    context = {"email": "x@y"}
    evaluate(flags, "f", context, now=1700000000)
    assert seen[0] == {"email": "x@y", "targetingKey": None, "$flagd": {"flagKey": "f", "timestamp": 1700000000}}
    assert context == {"email": "x@y"}


def test_rules_get_the_current_time_as_integer_seconds_by_default():
    seen = []
    evaluate(ruled(lambda ctx: seen.append(ctx) or None, {"a": 1}, "a"), "f", None)
    assert type(seen[0]["$flagd"]["timestamp"]) is int


def test_a_non_string_targeting_key_is_passed_to_the_rule_as_flagd_does():
    seen = []
    evaluate(ruled(lambda ctx: seen.append(ctx) or None, {"a": 1}, "a"), "f", {"targetingKey": 12345})
    assert seen[0]["targetingKey"] == 12345


def test_a_context_that_is_not_a_mapping_is_invalid_context():
    res = evaluate(ruled(lambda ctx: "a", {"a": 1}, "a"), "f", ["targetingKey"], default=0)
    assert (res.value, res.reason, res.error_code) == (0, "ERROR", "INVALID_CONTEXT")


def test_static_answers_are_prebuilt_and_shared():
    flags = flags_of(STATIC_DOC)
    assert evaluate(flags, "b", {"a": 1}) is evaluate(flags, "b", None)


@pytest.mark.parametrize(("rule", "reads"), [
    ({"==": [{"var": "email"}, "x"]}, False),
    ({"in": [{"var": ["tier", "none"]}, ["a", "$flagd"]]}, False),  # data, not a path
    ({">": [{"var": "$flagd.timestamp"}, 5]}, True),
    ({">": [{"var": ["$flagd.timestamp"]}, 5]}, True),
    ({"if": [{"var": "a"}, {">": [{"var": "$flagd.timestamp.x"}, 5]}, False]}, True),
    ({"==": [{"var": "$flagd.flagKey"}, "f"]}, False),
    ({"==": [{"var": "$flagd"}, "f"]}, True),
    ({"var": ""}, True),
    ({"var": None}, True),
    ({"var": {"cat": ["$flagd", ".timestamp"]}}, True),
    ({"missing": ["$flagd.timestamp"]}, True),
    ({"missing": ["email", "$flagd.flagKey"]}, False),
    ({"missing": {"var": "keys"}}, True),
    ({"missing_some": [1, ["email", "$flagd.timestamp"]]}, True),
    ({"missing_some": [1, ["email", "name"]]}, False),
])
def test_the_compiler_knows_whether_a_rule_reads_the_clock(rule, reads):
    assert compile_targeting(rule, flag_key="f", strict=False).reads_clock is reads


def test_rules_that_read_the_timestamp_get_it_and_others_do_not():
    doc = {"flags": {
        "clock": {"state": "ENABLED", "variants": {"past": 1, "future": 2}, "defaultVariant": "past",
                  "targeting": {"if": [{">": [{"var": "time"}, {"var": "$flagd.timestamp"}]}, "future", "past"]}},
        "plain": {"state": "ENABLED", "variants": {"yes": 1, "no": 2}, "defaultVariant": "no",
                  "targeting": {"if": [{"missing": ["$flagd"]}, "no", "yes"]}},
    }}
    flags = flags_of(doc)
    assert evaluate(flags, "clock", {"time": 4133980802}).variant == "future"
    assert evaluate(flags, "clock", {"time": 1}).variant == "past"
    assert evaluate(flags, "clock", {"time": 100}, now=50).variant == "future"
    assert evaluate(flags, "plain", {}).variant == "yes"
