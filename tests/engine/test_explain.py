"""``explain``: evaluate's answer, and a trace of every step the rule took to reach it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from agent.engine.evaluate import NO_DEFAULT, evaluate
from agent.engine.explain import explain, traced_rule
from agent.engine.formats.document import parse_flag_document
from agent.engine.rules.compiler import OPERATORS
from agent.engine.rules.errors import render
from agent.engine.rules.refs import resolve_refs
from tests.helpers import CONFORMANCE
from tests.rules.conformance import examples

NOW = 1_750_000_000
TESTBED = CONFORMANCE / "flagd-testbed"

#: Contexts tried on every testbed flag besides those of its Gherkin examples; chosen so that
#: together they reach every branch of the testbed's rules.
GENERIC_CONTEXTS: list[dict[str, Any]] = [
    {},
    {"targetingKey": "user-1"},
    {"targetingKey": "jon@company.com", "email": "jon@company.com"},
    {"fn": "Sulisław", "ln": "Świętopełk", "age": 29, "customer": False},
    {"time": 1},
    {"time": 4_102_444_800},
    {"version": "not-a-version"},
]


def parse(doc: dict[str, Any], **options: Any) -> dict[str, Any]:
    return dict(parse_flag_document(json.dumps(doc).encode(), "flags.json", **options).flags)


def flag_files_of_testbed() -> list[Path]:
    if not TESTBED.exists():
        pytest.skip(f"the flagd testbed is not at {TESTBED} (it comes with ../shared/conformance)")
    return sorted(TESTBED.glob("flags/*.json")) + sorted(TESTBED.glob("evaluator/flags/*.json"))


def gherkin_contexts() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for feature in sorted(TESTBED.glob("evaluator/gherkin/*.feature")) + sorted(TESTBED.glob("gherkin/*.feature")):
        for example in examples(*feature.relative_to(CONFORMANCE).parts):
            context = {k: v for k, v in example.context(example.flag_key).items() if k != "$flagd"}
            found.setdefault(example.flag_key, []).append(context)
    return found


def operator_paths(rule: Any, where: Any) -> Iterator[str]:
    """The JSON path of every operator in a rule, as trace steps name them."""
    if type(rule) is dict and len(rule) == 1 and "$ref" not in rule:
        ((name, operands),) = rule.items()
        here = (where, name)
        yield render(here)
        if type(operands) is list:
            for index, item in enumerate(operands):
                yield from operator_paths(item, (here, index))
        else:
            yield from operator_paths(operands, here)
    elif type(rule) is list:
        for index, item in enumerate(rule):
            yield from operator_paths(item, (where, index))


def check_answer_and_final_step(flags: dict, key: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    plain = evaluate(flags, key, context, now=NOW)
    found = explain(flags, key, context, now=NOW)
    res = found.resolution
    assert (res.value, res.variant, res.reason, res.error_code) == (
        plain.value, plain.variant, plain.reason, plain.error_code), (key, context)
    final = found.trace[-1]
    assert final["op"] == "result"
    assert (final["variant"], final["reason"]) == (plain.variant, plain.reason)
    if "rule_returned" in final:
        # The traced rule reached the variant evaluate answered, by the resolver's mapping.
        if plain.reason == "TARGETING_MATCH":
            assert final["chosen"] == plain.variant, (key, context, final)
        elif plain.reason == "DEFAULT":
            assert final["rule_returned"] is None
        elif plain.error_code == "GENERAL":
            assert final["chosen"] not in flags[key].variants
    return found.trace


@pytest.mark.parametrize("fractional", ["v1", "v2", "v3"])
def test_explain_traces_every_operator_of_the_testbed_targeting_flags(fractional: str) -> None:
    contexts = gherkin_contexts()
    seen_operators: set[str] = set()
    checked = 0
    for path in flag_files_of_testbed():
        flags = dict(parse_flag_document(path.read_bytes(), str(path), fractional=fractional,
                                         invalid_flags="isolate").flags)
        for key, flag in flags.items():
            for context in contexts.get(key, []) + GENERIC_CONTEXTS:
                check_answer_and_final_step(flags, key, context)
            if flag.rule is None or flag.broken or not flag.enabled:
                continue
            text, _, evaluators = flag.rule
            rule = orjson.loads(text) if text else orjson.loads(flag.definition)["targeting"]
            if evaluators:  # the rule as explain expands it (the flag keeps it unexpanded)
                rule = resolve_refs(rule, evaluators)
            wanted = set(operator_paths(rule, (("$.flags", key), "targeting")))
            traced: set[str] = set()
            constant: set[str] = set()  # decided at load (a malformed sem_ver): operands never run
            for context in contexts.get(key, []) + GENERIC_CONTEXTS:
                for step in explain(flags, key, context, now=NOW).trace:
                    if "path" in step:
                        assert step["path"] in wanted, (key, step)
                        assert step["op"] in OPERATORS
                        assert "result" in step or "error" in step, step
                        traced.add(step["path"])
                        seen_operators.add(step["op"])
                        if step.get("constant"):
                            constant.add(step["path"])
            never_run = {p for p in wanted if any(p.startswith(c) and p != c for c in constant)}
            assert traced == wanted - never_run, (path.name, key, sorted(wanted - traced))
            checked += 1
    assert checked > 40
    assert {"if", "and", "==", "var", "fractional", "sem_ver", "starts_with", "ends_with", "<", ">"} <= seen_operators


def test_if_step_names_the_branch_taken() -> None:
    flags = parse({"flags": {"plan": {
        "state": "ENABLED", "variants": {"pro": "p", "free": "f", "none": "n"}, "defaultVariant": "none",
        "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "pro", {"==": [{"var": "plan"}, "free"]}, "free"]},
    }}})
    steps = explain(flags, "plan", {"plan": "free"}, now=NOW).trace
    top = next(s for s in steps if s["op"] == "if")
    assert top["branch"] == {"taken": "then", "condition": 1}
    assert top["args"] == [False, "pro", True, "free"]
    assert [s["op"] for s in steps] == ["flag", "targeting", "if", "==", "var", "==", "var", "result"]
    assert [s["depth"] for s in steps] == [0, 0, 1, 2, 3, 2, 3, 0]
    reads = [s for s in steps if s["op"] == "var"]
    assert [(s["args"], s["result"]) for s in reads] == [(["plan"], "free"), (["plan"], "free")]
    steps = explain(flags, "plan", {"plan": "other"}, now=NOW).trace
    top = next(s for s in steps if s["op"] == "if")
    assert top["branch"]["taken"] == "none"
    assert steps[-1]["why"] == "the rule returned null: the default variant 'none'"
    assert steps[-1]["reason"] == "DEFAULT"


def test_short_circuit_marks_operands_not_evaluated() -> None:
    flags = parse({"flags": {"f": {
        "state": "ENABLED", "variants": {"true": True, "false": False}, "defaultVariant": "false",
        "targeting": {"and": [{"var": "a"}, {"var": "b"}]},
    }}})
    step = next(s for s in explain(flags, "f", {"a": 0}).trace if s["op"] == "and")
    assert step["skipped"] == [1]
    assert step["args"] == [0, None]
    assert step["result"] == 0


def test_fractional_step_shows_the_bucket_and_the_ranges() -> None:
    flags = parse({"flags": {"rollout": {
        "state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
        "targeting": {"fractional": [["a", 30], ["b", 70]]},
    }}})
    for user in ("u1", "u2", "u3", "u4"):
        found = explain(flags, "rollout", {"targetingKey": user})
        step = next(s for s in found.trace if s["op"] == "fractional")
        bucket = step["bucket"]
        assert step["bucket_by"] == "rollout" + user
        assert bucket["total"] == 100
        assert bucket["ranges"] == [{"variant": "a", "from": 0, "to": 30}, {"variant": "b", "from": 30, "to": 100}]
        chosen = next(r for r in bucket["ranges"] if r["from"] <= bucket["bucket"] < r["to"])
        assert bucket["bucket"] == (bucket["hash"] * 100) >> 32
        assert chosen["variant"] == bucket["chosen"] == found.resolution.variant
    without_key = explain(flags, "rollout", {})
    step = next(s for s in without_key.trace if s["op"] == "fractional")
    assert "nothing to bucket by" in step["bucket"]["why"]
    assert without_key.resolution.reason == "DEFAULT"


def test_legacy_v1_bucketing_is_traced_as_percentages() -> None:
    flags = parse({"flags": {"rollout": {
        "state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
        "targeting": {"fractional": [["a", 30], ["b", 70]]},
    }}}, fractional="v1")
    for user in ("u1", "u2", "u3", "u4", "u5"):
        found = explain(flags, "rollout", {"targetingKey": user})
        bucket = next(s for s in found.trace if s["op"] == "fractional")["bucket"]
        assert [r["variant"] for r in bucket["ranges"]] == ["a", "b"] and bucket["ranges"][1]["to"] == 100.0
        chosen = next(r for r in bucket["ranges"] if r["from"] <= bucket["percent"] < r["to"])
        assert chosen["variant"] == bucket["chosen"] == found.resolution.variant


def test_rule_error_is_traced_up_to_the_failing_step() -> None:
    flags = parse({"flags": {"f": {
        "state": "ENABLED", "variants": {"a": "a"}, "defaultVariant": "a",
        "targeting": {"if": [{"var": "x"}, "a", "missing-variant"]},
    }}})
    found = explain(flags, "f", {"x": False})
    assert found.resolution.error_code == "GENERAL"
    assert found.trace[-1]["chosen"] == "missing-variant"
    assert "not one of the flag's variants" in found.trace[-1]["why"]


def test_long_allow_list_is_cut_in_the_trace() -> None:
    users = [f"user-{i}" for i in range(1000)]
    flags = parse({"flags": {"f": {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
        "targeting": {"if": [{"in": [{"var": "targetingKey"}, users]}, "on", "off"]},
    }}})
    step = next(s for s in explain(flags, "f", {"targetingKey": "user-999"}).trace if s["op"] == "in")
    assert step["result"] is True
    assert len(step["args"][1]) == 21 and step["args"][1][-1] == "... 980 more"


def test_static_disabled_missing_and_simple_flags_say_why() -> None:
    flags = parse({"flags": {
        "static": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"},
        "off": {"state": "DISABLED", "variants": {"on": True}, "defaultVariant": "on"},
        "rollout": {"enabled": True, "rollout_percentage": 50, "allowed_users": ["vip"]},
    }})
    assert explain(flags, "static").trace[-1]["why"] == "no targeting: the default variant 'on'"
    assert "DISABLED" in explain(flags, "off").trace[-1]["why"]
    missing = explain(flags, "nope")
    assert missing.resolution.error_code == "FLAG_NOT_FOUND"
    assert missing.trace == [{"op": "flag", "depth": 0, "key": "nope", "found": False,
                              "why": "no flag 'nope' is served: FLAG_NOT_FOUND"}]
    vip = explain(flags, "rollout", {"targetingKey": "vip"})
    assert [s["op"] for s in vip.trace] == ["flag", "allowed_users", "result"]
    assert vip.resolution.variant == "on"
    for user in (f"user-{i}" for i in range(20)):
        found = explain(flags, "rollout", {"targetingKey": user})
        step = next(s for s in found.trace if s["op"] == "rollout")
        assert found.resolution.variant == ("on" if step["bucket"] < 50 else "off")
        assert found.resolution == evaluate(flags, "rollout", {"targetingKey": user})


def test_default_and_type_are_evaluates() -> None:
    flags = parse({"flags": {"f": {"state": "ENABLED", "variants": {"a": "x"}, "defaultVariant": None,
                                   "targeting": {"var": "pick"}}}})
    found = explain(flags, "f", {}, default="fallback")
    assert found.resolution.value == "fallback"
    assert "no default variant" in found.trace[-1]["why"]
    mismatch = explain(flags, "f", {"pick": "a"}, expected_type="boolean")
    assert mismatch.resolution.error_code == "TYPE_MISMATCH"
    assert mismatch.resolution.value is NO_DEFAULT
    assert "TYPE_MISMATCH" in mismatch.trace[-1]["why"]


def test_traced_rule_is_compiled_once_per_flag_version() -> None:
    doc = {"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                           "targeting": {"if": [{"var": "x"}, "b", "a"]}}}}
    first = parse(doc)
    again = parse(doc)
    assert traced_rule(first["f"]) is traced_rule(again["f"])
    doc["flags"]["f"]["targeting"] = {"if": [{"var": "y"}, "b", "a"]}
    assert traced_rule(parse(doc)["f"]) is not traced_rule(first["f"])


def test_evaluator_refs_are_traced_resolved() -> None:
    flags = parse({"$evaluators": {"is_staff": {"ends_with": [{"var": "email"}, "@corp.com"]}},
                   "flags": {"f": {"state": "ENABLED", "variants": {"y": True, "n": False}, "defaultVariant": "n",
                                   "targeting": {"if": [{"$ref": "is_staff"}, "y", "n"]}}}})
    found = explain(flags, "f", {"email": "a@corp.com"})
    assert [s["op"] for s in found.trace] == ["flag", "targeting", "if", "ends_with", "var", "result"]
    assert found.resolution.variant == "y"
