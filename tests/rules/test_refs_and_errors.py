"""``resolve_refs`` and the refusals of ``compile_rule``: where, why, and strict vs lenient."""

from __future__ import annotations

import pytest

from agent.engine.rules import RuleError, compile_rule, resolve_refs

EVALUATORS = {
    "is_ballmer": {"==": ["ballmer@macrosoft.com", {"var": ["email"]}]},
    "is_ballmer_or_gates": {"or": [{"$ref": "is_ballmer"}, {"==": ["gates@macrosoft.com", {"var": "email"}]}]},
}


def test_resolve_refs_replaces_references_recursively_and_leaves_the_input_alone() -> None:
    rule = {"if": [{"$ref": "is_ballmer_or_gates"}, "hi", "bye"]}
    resolved = resolve_refs(rule, EVALUATORS)
    gates = {"==": ["gates@macrosoft.com", {"var": "email"}]}
    assert resolved == {"if": [{"or": [EVALUATORS["is_ballmer"], gates]}, "hi", "bye"]}
    assert rule == {"if": [{"$ref": "is_ballmer_or_gates"}, "hi", "bye"]}
    fn = compile_rule(resolved, flag_key="f")
    assert fn({"email": "gates@macrosoft.com"}) == "hi"
    assert fn({"email": "someone@else.com"}) == "bye"


def test_resolve_refs_names_the_missing_evaluator() -> None:
    with pytest.raises(RuleError) as caught:
        resolve_refs({"if": [{"$ref": "nonexistent_evaluator"}, "a", "b"]}, EVALUATORS, "$.flags.f.targeting")
    assert caught.value.path == "$.flags.f.targeting.if[0].$ref"
    assert "nonexistent_evaluator" in caught.value.message and "is_ballmer" in caught.value.message


def test_resolve_refs_refuses_cycles() -> None:
    evaluators = {"a": {"!": {"$ref": "b"}}, "b": {"and": [{"$ref": "a"}]}}
    with pytest.raises(RuleError, match="cycle: a -> b -> a"):
        resolve_refs({"$ref": "a"}, evaluators)


def test_a_reference_used_twice_is_not_a_cycle() -> None:
    resolved = resolve_refs({"and": [{"$ref": "is_ballmer"}, {"$ref": "is_ballmer"}]}, EVALUATORS)
    assert resolved["and"][0] == resolved["and"][1]


def test_unresolved_reference_and_unknown_operator_are_always_refused() -> None:
    for strict in (True, False):
        with pytest.raises(RuleError, match="not resolved"):
            compile_rule({"if": [{"$ref": "x"}, 1, 2]}, flag_key="f", strict=strict)
        with pytest.raises(RuleError, match="unknown operator 'invalid'") as caught:
            compile_rule({"!": {"invalid": ["this is not valid targeting"]}}, flag_key="f", strict=strict)
        assert caught.value.path == "$.targeting['!']"


def test_targeting_must_be_an_object_and_empty_means_no_rule() -> None:
    with pytest.raises(RuleError, match="JSON object"):
        compile_rule(["a"], flag_key="f")
    assert compile_rule({}, flag_key="f")({"targetingKey": "x"}) is None


def test_objects_inside_rules_must_be_operations() -> None:
    with pytest.raises(RuleError, match="exactly one key") as caught:
        compile_rule({"==": [{"var": "x"}, {"a": 1, "b": 2}]}, flag_key="f", path="$.flags.f.targeting")
    assert caught.value.path == "$.flags.f.targeting['=='][1]"
    problems: list[RuleError] = []
    fn = compile_rule({"==": [{"var": "x"}, {}]}, flag_key="f", strict=False, on_problem=problems.append)
    assert fn({"x": 1}) is False and len(problems) == 1


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"==": [1]}, "$.targeting['==']"),
        ({"cat": "x"}, "$.targeting.cat"),
        ({"in": ["a", "b", "c"]}, "$.targeting.in"),
        ({"reduce": [[1], {"var": "current"}]}, "$.targeting.reduce"),
        ({"missing": [1]}, "$.targeting.missing"),
        ({"missing_some": ["1", ["a"]]}, "$.targeting.missing_some[0]"),
        ({"*": [2]}, "$.targeting['*']"),
        ({"starts_with": [{"var": "id"}, None]}, "$.targeting.starts_with[1]"),
        ({"if": [True, {"var": "$flagd.nope"}]}, "$.targeting.if[1].var"),
    ],
)
def test_schema_violations_are_refused_with_their_path_when_strict(rule: dict, path: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(rule, flag_key="f")
    assert caught.value.path == path
    assert str(caught.value).startswith(path)
    compile_rule(rule, flag_key="f", strict=False)


def test_a_refused_rule_lists_every_problem_in_the_order_met() -> None:
    rule = {"and": [{"sem_ver": [{"var": "v"}, "~>", "1"]}, {"nope": 1}, {"$ref": "x"}, {"cat": "y"}]}
    with pytest.raises(RuleError) as caught:
        compile_rule(rule, flag_key="f")
    assert [error.path for error in caught.value.errors] == [
        "$.targeting.and[0].sem_ver[1]", "$.targeting.and[1]", "$.targeting.and[2].$ref", "$.targeting.and[3].cat",
    ]
    assert (caught.value.path, caught.value.message) == (caught.value.errors[0].path, caught.value.errors[0].message)
    assert str(caught.value).count("$.targeting.and[") == 4


def test_lenient_compiling_tolerates_schema_problems_and_refuses_with_every_unevaluable_node() -> None:
    tolerated: list[RuleError] = []
    rule = {"and": [{"sem_ver": [{"var": "v"}, "~>", "1"]}, {"nope": 1}, {"cat": "y"}, {"nope_either": 2}]}
    with pytest.raises(RuleError) as caught:
        compile_rule(rule, flag_key="f", strict=False, on_problem=tolerated.append)
    assert [error.path for error in caught.value.errors] == ["$.targeting.and[1]", "$.targeting.and[3]"]
    assert [error.path for error in tolerated] == ["$.targeting.and[0].sem_ver[1]", "$.targeting.and[2].cat"]


def test_a_lone_error_lists_itself_and_the_same_problem_twice_counts_once() -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule({"nope": 1}, flag_key="f")
    assert caught.value.errors == (caught.value,)
    twice = RuleError.several([RuleError("$.a", "x"), RuleError("$.b", "y"), RuleError("$.a", "x")])
    assert [(e.path, e.message) for e in twice.errors] == [("$.a", "x"), ("$.b", "y")]


def test_resolve_refs_finds_every_broken_reference() -> None:
    rule = {"or": [{"$ref": "gone"}, {"$ref": "is_ballmer"}, {"$ref": 5}, {"$ref": "x", "y": 1}]}
    with pytest.raises(RuleError) as caught:
        resolve_refs(rule, EVALUATORS)
    assert [error.path for error in caught.value.errors] == [
        "$.targeting.or[0].$ref", "$.targeting.or[2].$ref", "$.targeting.or[3]",
    ]
    broken: list[RuleError] = []
    resolved = resolve_refs(rule, EVALUATORS, on_error=broken.append)
    assert resolved == {"or": [None, EVALUATORS["is_ballmer"], None, None]}
    assert len(broken) == 3


def test_unknown_fractional_version_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="v4"):
        compile_rule({"var": "x"}, flag_key="f", fractional="v4")


def test_a_rule_nested_beyond_the_stack_is_refused_not_crashed() -> None:
    rule: dict = {"var": "x"}
    for _ in range(5000):
        rule = {"!": [rule]}
    with pytest.raises(RuleError, match="nested too deeply"):
        compile_rule(rule, flag_key="f", strict=False)
