"""A file with several problems is refused with all of them at once, one per spot.

A CI job validating a reviewed file must show its author everything to fix in one run: every
flag, and within a flag every problem that does not depend on another (each variant's type, a
default naming no variant, each broken node of the targeting, each bad metadata value).
"""

from __future__ import annotations

import json

import pytest

from agent.engine.evaluate import evaluate
from agent.engine.formats.document import FlagFileError, parse_flag_document

MIXED = "variant values must all be of one type: 'on' is a boolean, "
NO_SUCH_DEFAULT = "must name one of the variants (on, off, maybe) or be null, got 'onn'"


def problems(doc, **kwargs) -> list[tuple[str, str]]:
    """(path, message) of every problem of a refused document, in the order reported."""
    with pytest.raises(FlagFileError) as info:
        parse_flag_document(json.dumps(doc).encode(), "flags.json", **kwargs)
    return [(p.path, p.message) for p in info.value.problems]


def paths(doc, **kwargs) -> list[str]:
    return [path for path, _ in problems(doc, **kwargs)]


def flagd_flag(**change) -> dict:
    flag = {"state": "ENABLED", "variants": {"on": True, "off": False, "maybe": False}, "defaultVariant": "on"}
    return {**flag, **change}


# Each broken flagd flag, with the paths of its problems (relative to the flag).
FLAGD_2 = (flagd_flag(variants={"on": True, "off": "no", "maybe": False}, defaultVariant="onn"),
           ["variants.off", "defaultVariant"])
FLAGD_3 = (flagd_flag(variants={"on": True, "off": "no", "maybe": 0}, defaultVariant="onn"),
           ["variants.off", "variants.maybe", "defaultVariant"])
FLAGD_5 = (flagd_flag(variants={"on": True, "off": "no", "maybe": False}, defaultVariant="onn",
                      metadata={"team": ["a"]},
                      targeting={"if": [{"starts_wth": [{"var": "email"}, "a"]}, "on",
                                        {"fractional": [["on", -5], ["off", 5]]}]}),
           ["variants.off", "metadata.team", "defaultVariant", "targeting.if[0]", "targeting.if[2].fractional[0][1]"])
# The same for simple flags.
SIMPLE_2 = ({"enabled": "yes", "rollout_percentage": 150}, ["enabled", "rollout_percentage"])
SIMPLE_3 = ({"enabled": "yes", "rollout_percentage": 150, "allowed_users": ["u", 7]},
            ["enabled", "rollout_percentage", "allowed_users[1]"])
SIMPLE_5 = ({"enabled": "yes", "rollout_percentage": 150, "rollout": 5, "allowed_users": ["u", 7, None], "name": "x"},
            ["enabled", "rollout_percentage", "allowed_users[1]", "allowed_users[2]", "name"])


def test_a_mixed_type_variant_and_a_default_naming_no_variant_are_both_reported():
    assert problems({"flags": {"f": FLAGD_2[0]}}) == [
        ("$.flags.f.variants.off", MIXED + "'off' is a string"),
        ("$.flags.f.defaultVariant", NO_SUCH_DEFAULT),
    ]


@pytest.mark.parametrize(("flag", "where"), [FLAGD_2, FLAGD_3, FLAGD_5, SIMPLE_2, SIMPLE_3, SIMPLE_5],
                         ids=["flagd-2", "flagd-3", "flagd-5", "simple-2", "simple-3", "simple-5"])
def test_every_problem_of_one_flag_is_reported(flag, where):
    found = paths({"flags": {"f": flag}})
    if "rollout" in flag:
        where = [*where, "rollout"]  # rollout and rollout_percentage both given: one more
    assert sorted(found) == sorted(f"$.flags.f.{spot}" for spot in where)


@pytest.mark.parametrize("shape", ["map", "array"])
def test_every_problem_of_every_flag_is_reported(shape):
    broken = {"a": FLAGD_2, "b": FLAGD_5, "c": SIMPLE_3, "d": FLAGD_3}
    if shape == "map":
        doc = {"flags": {"ok": flagd_flag(), **{key: flag for key, (flag, _) in broken.items()}}}
        prefix = {key: f"$.flags.{key}" for key in broken}
    else:
        flags = [{"key": key, **flag} for key, (flag, _) in broken.items() if "enabled" not in flag]
        doc = {"flags": [{"key": "ok", **flagd_flag()}, *flags]}
        prefix = {key: f"$.flags[{index}]" for index, key in enumerate(["a", "b", "d"], start=1)}
    expected = [f"{prefix[key]}.{spot}" for key, (_, where) in broken.items() if key in prefix for spot in where]
    assert sorted(paths(doc)) == sorted(expected)
    assert len(expected) == (13 if shape == "map" else 10)


def test_every_problem_of_a_flat_simple_file_is_reported():
    doc = {"a": SIMPLE_2[0], "ok": {"enabled": True}, "b": SIMPLE_5[0]}
    expected = [f"$.a.{spot}" for spot in SIMPLE_2[1]] + [f"$.b.{spot}" for spot in [*SIMPLE_5[1], "rollout"]]
    assert sorted(paths(doc)) == sorted(expected)


def test_every_broken_node_of_a_rule_is_reported():
    rule = {"or": [{"sem_ver": [{"var": "v"}, "~>", "1.0.0"]},
                   {"no_such_op": [1]},
                   {"fractional": [["on", 1.5], ["off"]]},
                   {"in": ["x", {"var": "list"}], "extra": 1}]}
    assert paths({"flags": {"f": flagd_flag(targeting=rule)}}) == [
        "$.flags.f.targeting.or[0].sem_ver[1]",
        "$.flags.f.targeting.or[1]",
        "$.flags.f.targeting.or[2].fractional[0][1]",
        "$.flags.f.targeting.or[3]",
    ]


def test_a_broken_reference_is_one_problem_and_the_rest_of_the_rule_is_still_checked():
    rule = {"if": [{"$ref": "missing"}, "on", {"fractional": [{"$ref": "missing"}, ["on", -1]]}]}
    found = problems({"flags": {"f": flagd_flag(targeting=rule)}, "$evaluators": {"staff": {"var": "staff"}}})
    assert [path for path, _ in found] == [
        "$.flags.f.targeting.if[0].$ref",
        "$.flags.f.targeting.if[2].fractional[0].$ref",  # not also "the bucketing value must be an expression"
        "$.flags.f.targeting.if[2].fractional[1][1]",
    ]
    assert found[0][1] == "no evaluator named 'missing' under \"$evaluators\" (defined: staff)"
    assert paths({"flags": {"f": flagd_flag(targeting={"$ref": "missing"})}}) == ["$.flags.f.targeting.$ref"]


def test_a_file_level_problem_does_not_hide_the_flags_problems():
    doc = {"metadata": {"flagSetId": 7},
           "$evaluators": {"bad": 3, "good": {"in": [{"var": "targetingKey"}, ["u"]]}},
           "flags": {"f": flagd_flag(defaultVariant="onn", targeting={"if": [{"$ref": "good"}, "on", "off"]}),
                     "g": {"enabled": "no"}}}
    assert paths(doc, invalid_flags="isolate") == [
        "$.metadata.flagSetId", "$.$evaluators.bad", "$.flags.f.defaultVariant", "$.flags.g.enabled",
    ]


def test_isolate_mode_serves_the_good_flags_and_lists_every_problem_of_the_broken_one():
    doc = {"flags": {"ok": flagd_flag(), "f": FLAGD_5[0]}}
    parsed = parse_flag_document(json.dumps(doc).encode(), "flags.json", invalid_flags="isolate")
    assert len([p for p in parsed.problems if p.flag == "f"]) == 5
    assert evaluate(parsed.flags, "ok", {}).value is True
    broken = evaluate(parsed.flags, "f", {}, default=False)
    assert broken.error_code == "PARSE_ERROR"
    assert "variants.off" in broken.error_message and "defaultVariant" in broken.error_message


def test_a_valid_file_still_has_no_problems():
    doc = {"$evaluators": {"staff": {"in": [{"var": "targetingKey"}, ["u"]]}},
           "flags": {"f": flagd_flag(targeting={"if": [{"$ref": "staff"}, "on", {"fractional": [["on", 1], ["off", 1]]}]}),
                     "s": {"enabled": True, "rollout_percentage": 50, "allowed_users": ["u"]}}}
    parsed = parse_flag_document(json.dumps(doc).encode(), "flags.json")
    assert parsed.problems == () and set(parsed.flags) == {"f", "s"}
    assert evaluate(parsed.flags, "f", {"targetingKey": "u"}).variant == "on"


def test_a_yaml_file_reports_every_problem_too():
    text = b"""# reviewed
flags:
  banner:
    state: ENABLED
    variants: {red: "#f00", blue: 255}
    defaultVariant: green
    targeting: {if: [{no_such_op: []}, red, blue]}
  checkout: {enabled: "yes", rollout_percentage: 120}
"""
    with pytest.raises(FlagFileError) as info:
        parse_flag_document(text, "flags.yaml")
    assert [p.path for p in info.value.problems] == [
        "$.flags.banner.variants.blue", "$.flags.banner.defaultVariant", "$.flags.banner.targeting.if[0]",
        "$.flags.checkout.enabled", "$.flags.checkout.rollout_percentage",
    ]
