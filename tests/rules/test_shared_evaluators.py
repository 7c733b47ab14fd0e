"""``$evaluators`` are compiled once and shared, and what a rule may expand to is bounded.

Evaluators that refer to each other used to be expanded into every rule: ``e{n} = e{n-1} or
e{n-1}`` doubles with each line, and 18 lines (1 KB) took 90 s and 550 MB to load.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.engine.evaluate import evaluate
from agent.engine.formats.document import FlagFileError, parse_flag_document
from agent.engine.limits import Limits
from agent.engine.rules import RuleError, compile_rule, compile_targeting, resolve_refs
from agent.engine.rules.refs import SharedEvaluators
from tests.helpers import ROOT

BOOL = {"on": True, "off": False}


def doubling(levels: int, combine: str = "or") -> dict:
    evaluators = {"e0": {"==": [{"var": "x"}, 1]}}
    for i in range(1, levels + 1):
        evaluators[f"e{i}"] = {combine: [{"$ref": f"e{i - 1}"}, {"$ref": f"e{i - 1}"}]}
    return evaluators


def document(evaluators: dict, rule: dict, **flags: dict) -> bytes:
    flag = {"state": "ENABLED", "variants": BOOL, "defaultVariant": "off", "targeting": rule}
    return json.dumps({"$evaluators": evaluators, "flags": {"a": flag, **flags}}).encode()


@pytest.mark.parametrize("levels", [14, 18, 40, 200])
@pytest.mark.parametrize("combine", ["or", "and", "if"])
def test_evaluators_doubling_each_other_are_refused_with_the_evaluator_and_the_limit(levels, combine):
    evaluators = doubling(levels, combine)
    with pytest.raises(FlagFileError) as caught:
        parse_flag_document(document(evaluators, {"if": [{"$ref": f"e{levels}"}, "on", "off"]}), "f.json")
    problems = caught.value.problems
    assert problems and all("max-rule-nodes" in p.message for p in problems), problems
    # The first evaluator past 10,000 nodes is named, with what made it large.
    assert problems[0].path.startswith("$.$evaluators.e") and "evaluator 'e" in problems[0].message


def test_a_bomb_far_past_any_limit_compiles_in_no_time_when_the_limit_allows_it():
    # With sharing, compiling costs the size of the file, not of the expansion: e58 is 2**59 nodes.
    limits = Limits(max_rule_nodes=2**62, max_depth=200)
    flags = parse_flag_document(document(doubling(58), {"if": [{"$ref": "e1"}, "on", "off"]}), "f.json",
                                limits=limits).flags
    assert evaluate(flags, "a", {"x": 1}).variant == "on"


def test_each_evaluator_is_compiled_once_and_its_closure_shared():
    shared = SharedEvaluators(doubling(5))
    first = shared.use("e5", "$", "flag-a")
    assert shared.use("e5", "$", "flag-b") is first  # no fractional on the flag key: shared by all flags
    rule = compile_targeting({"or": [{"$ref": "e3"}, {"$ref": "e3"}]}, flag_key="a", evaluators=shared)
    assert rule.nodes == 1 + 2 * shared.use("e3", "$", "a").nodes  # the "or", and e3 twice
    assert rule.evaluate({"x": 1}) is True and rule.evaluate({"x": 2}) is False


def test_a_rule_that_expands_past_the_limit_names_its_path_and_the_evaluator():
    evaluators = doubling(8)  # e8 expands to a little over 1,000 nodes
    text = document(evaluators, {"or": [{"$ref": "e8"}, {"$ref": "e8"}, {"$ref": "e8"}]})
    parse_flag_document(text, "f.json", limits=Limits(max_rule_nodes=4_000))
    with pytest.raises(FlagFileError) as caught:
        parse_flag_document(text, "f.json", limits=Limits(max_rule_nodes=2_500))
    (problem,) = caught.value.problems
    assert problem.path == "$.flags.a.targeting" and problem.flag == "a"
    assert "more than 2,500 nodes" in problem.message and "evaluator 'e8'" in problem.message


def test_a_long_chain_of_references_is_refused_by_depth_not_by_a_recursion_error():
    chain = {f"c{i}": {"!": {"$ref": f"c{i + 1}"}} for i in range(3000)}
    chain["c3000"] = {"var": "x"}
    with pytest.raises(FlagFileError) as caught:
        parse_flag_document(document(chain, {"$ref": "c0"}), "f.json")
    assert any("levels deep" in p.message and "max-depth" in p.message for p in caught.value.problems)
    isolated = parse_flag_document(document(chain, {"$ref": "c0"}), "f.json", invalid_flags="isolate")
    assert evaluate(isolated.flags, "a").error_code == "PARSE_ERROR"
    assert any("levels deep" in p.message for p in isolated.flags["a"].problems)


def test_cycles_are_refused_wherever_they_start():
    evaluators = {"a": {"!": {"$ref": "b"}}, "b": {"and": [{"$ref": "c"}]}, "c": {"or": [{"$ref": "a"}, True]}}
    for start in "abc":
        with pytest.raises(RuleError, match="cycle"):
            compile_targeting({"$ref": start}, flag_key="f", evaluators=SharedEvaluators(evaluators))
    with pytest.raises(FlagFileError, match="cycle"):
        parse_flag_document(document(evaluators, {"$ref": "a"}), "f.json")


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_an_evaluator_bucketing_by_the_flag_key_buckets_each_flag_by_its_own_key(version):
    # A fractional without a bucketing value hashes the flag key: one closure per flag, as if expanded.
    evaluators = {"split": {"fractional": [["on", 50], ["off", 50]]},
                  "split_by_email": {"fractional": [{"var": "email"}, ["on", 50], ["off", 50]]},
                  "wrapped": {"if": [True, {"$ref": "split"}, "off"]}}
    flags = {k: {"state": "ENABLED", "variants": BOOL, "defaultVariant": "off", "targeting": {"$ref": ref}}
             for k, ref in (("one", "split"), ("two", "split"), ("three", "wrapped"), ("four", "split_by_email"))}
    doc = {"$evaluators": evaluators, "flags": flags}
    compiled = parse_flag_document(json.dumps(doc).encode(), "f.json", fractional=version).flags
    for i in range(300):
        context = {"targetingKey": f"user-{i}", "email": f"u{i}@x.org"}
        for key, flag in flags.items():
            expected = compile_rule(resolve_refs(flag["targeting"], evaluators), flag_key=key,
                                    fractional=version)({**context, "$flagd": {"flagKey": key}})
            assert evaluate(compiled, key, context).variant == expected, (key, context)


def test_a_changed_evaluator_changes_the_flags_that_use_it_and_only_those():
    def parse(rule):
        doc = {"$evaluators": {"r": rule, "s": {"==": [1, 1]}},
               "flags": {"uses_r": {"state": "ENABLED", "variants": BOOL, "defaultVariant": "off",
                                    "targeting": {"if": [{"$ref": "r"}, "on", "off"]}},
                         "uses_s": {"state": "ENABLED", "variants": BOOL, "defaultVariant": "off",
                                    "targeting": {"if": [{"$ref": "s"}, "on", "off"]}}}}
        return parse_flag_document(json.dumps(doc).encode(), "f.json").flags

    one, two = parse({"==": [1, 1]}), parse({"==": [1, 2]})
    assert one["uses_r"] != two["uses_r"] and one["uses_s"] == two["uses_s"]


def test_an_empty_evaluator_answers_null_as_empty_targeting_does():
    doc = document({"nothing": {}}, {"$ref": "nothing"})
    assert evaluate(parse_flag_document(doc, "f.json").flags, "a").reason == "DEFAULT"


def test_resolve_refs_refuses_to_build_an_exponential_copy():
    with pytest.raises(RuleError, match="more than 1,000 nodes"):
        resolve_refs({"$ref": "e30"}, doubling(30), max_nodes=1_000)


def test_validate_refuses_an_evaluator_bomb_in_moments():
    # Before compiling once and sharing, 18 doublings took 90 s and 40 would never finish.
    text = document(doubling(40), {"if": [{"$ref": "e40"}, "on", "off"]})
    path = ROOT / ".pytest-bomb.json"
    try:
        path.write_bytes(text)
        done = subprocess.run([sys.executable, "-m", "agent", "validate", str(path)], capture_output=True,
                              text=True, timeout=30, cwd=ROOT)
    finally:
        path.unlink(missing_ok=True)
    assert done.returncode == 1
    assert "$.$evaluators.e" in done.stdout and "max-rule-nodes" in done.stdout


def test_a_flag_reads_the_clock_when_an_evaluator_it_refers_to_does():
    evaluators = {"late": {">": [{"var": "$flagd.timestamp"}, 1_000_000]}, "wrap": {"!": {"!": {"$ref": "late"}}}}
    flags = parse_flag_document(document(evaluators, {"if": [{"$ref": "wrap"}, "on", "off"]}), "f.json").flags
    assert evaluate(flags, "a").variant == "on"  # the real clock is past 1,000,000 s
    assert evaluate(flags, "a", now=5).variant == "off"
