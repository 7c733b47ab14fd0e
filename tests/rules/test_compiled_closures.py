"""What compiling buys: no rule JSON on the request path, constants folded, no crashes.

The property test feeds the testbed's real rules arbitrary JSON contexts: JSON Logic is
lenient, so odd types must give an answer (often null or false), never an exception.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.engine.rules import compile_rule, resolve_refs
from agent.engine.rules.compiler import _RuleCompiler
from agent.engine.rules.nodes import Const

from .conformance import load_json


def _compile_node(rule: Any) -> Any:
    return _RuleCompiler("flag", "v2", strict=False, on_problem=None).compile(rule, "$")


def test_the_compiled_function_no_longer_reads_the_rule_json() -> None:
    rule = {"if": [{"in": [{"var": "email"}, ["a@x.com", "b@x.com"]]}, "listed", {"cat": ["not-", {"var": "email"}]}]}
    pristine = copy.deepcopy(rule)
    fn = compile_rule(rule, flag_key="flag")
    rule["if"][0]["in"][1].append("c@x.com")
    rule["if"][1] = "changed"
    rule["if"][2]["cat"] = ["changed"]
    assert fn({"email": "a@x.com"}) == "listed"
    assert fn({"email": "c@x.com"}) == "not-c@x.com"
    assert compile_rule(pristine, flag_key="flag")({"email": "c@x.com"}) == "not-c@x.com"


def test_constant_sub_expressions_are_folded_at_compile_time() -> None:
    assert _compile_node({"if": [{"==": [1, "1"]}, {"cat": ["a", {"+": [1, 2]}]}, "b"]}).value == "a3"
    assert _compile_node({"merge": [[1], [2, {"max": [3, 4]}]]}).value == [1, 2, 4]
    assert _compile_node({"sem_ver": ["1.2.3", "^", "1.0.0"]}).value is True
    assert isinstance(_compile_node({"and": [True, "x"]}), Const)
    assert not isinstance(_compile_node({"and": [True, {"var": "x"}]}), Const)


def test_if_with_constant_conditions_keeps_only_the_live_branches() -> None:
    node = _compile_node({"if": [False, {"var": "never"}, {"var": "x"}, "x", True, "always", {"var": "dead"}]})
    assert node({"x": 1}) == "x"
    assert node({}) == "always"


def test_a_failing_constant_expression_fails_at_evaluation_not_at_load() -> None:
    fn = compile_rule({"if": [{"var": "x"}, {"*": []}, "no"]}, flag_key="flag", strict=False)
    assert fn({"x": False}) == "no"


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda child: st.one_of(st.lists(child, max_size=3), st.dictionaries(st.text(max_size=6), child, max_size=3)),
    max_leaves=8,
)
CONTEXT_KEYS = [
    "targetingKey", "email", "version", "id", "num", "tier", "color", "user", "time", "missing_key", "hashing_input",
]


def _testbed_rules() -> list[tuple[str, Any]]:
    document = load_json("flagd-testbed", "evaluator", "flags", "testkit-flags.json")
    found = []
    for key, flag in document["flags"].items():
        if flag.get("targeting") and "nonexistent" not in json.dumps(flag["targeting"]):
            found.append((key, resolve_refs(flag["targeting"], document["$evaluators"])))
    return found


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional={key: json_values for key in CONTEXT_KEYS}), st.sampled_from(["v1", "v2", "v3"]))
def test_testbed_rules_answer_any_json_context_without_raising(context: dict, version: str) -> None:
    context = {**context, "$flagd": {"flagKey": "flag", "timestamp": 1750000000}}
    for key, rule in _testbed_rules():
        if key == "error-targeting-flag":
            continue
        value = compile_rule(rule, flag_key=key, fractional=version, strict=False)(context)
        json.dumps(value)
