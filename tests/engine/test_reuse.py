"""A re-parse reuses compiled flags only when nothing they depend on changed."""

from __future__ import annotations

import json

import pytest

from agent.engine.evaluate import evaluate
from agent.engine.formats.document import FlagFileError, parse_flag_document


def flagd(**flags) -> dict:
    return {"flags": flags}


def boolean(default: str = "on", **extra) -> dict:
    return {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": default, **extra}


def parse(doc: dict, reuse=None, **options):
    return parse_flag_document(json.dumps(doc).encode(), "flags.json", reuse=reuse, **options)


def test_unchanged_flags_are_reused_and_changed_ones_compiled_again():
    first = parse(flagd(a=boolean(), b=boolean()))
    second = parse(flagd(a=boolean(), b=boolean("off")), reuse=first)
    assert second.flags["a"] is first.flags["a"]
    assert second.flags["b"] is not first.flags["b"]
    assert evaluate(second.flags, "b", {}).value is False


def test_the_same_flag_with_its_keys_in_another_order_is_reused():
    first = parse(flagd(a=boolean(targeting={"if": [{"var": "x"}, "on", "off"]})))
    reordered = {"targeting": {"if": [{"var": "x"}, "on", "off"]}, "defaultVariant": "on",
                 "variants": {"off": False, "on": True}, "state": "ENABLED"}
    assert parse(flagd(a=reordered), reuse=first).flags["a"] is first.flags["a"]


def test_a_change_of_json_type_is_a_change_even_where_python_calls_it_equal():
    first = parse(flagd(a=boolean()))
    doc = flagd(a={"state": "ENABLED", "variants": {"on": 1, "off": 0}, "defaultVariant": "on"})
    second = parse(doc, reuse=first)
    assert second.flags["a"] is not first.flags["a"]
    assert second.flags["a"].value_type == "integer"


@pytest.mark.parametrize("change", [
    lambda d: d.update(metadata={"team": "web"}),
    lambda d: d.update({"$evaluators": {"x": {"==": [1, 1]}}}),
])
def test_a_change_of_the_file_context_compiles_every_flag_again(change):
    doc = flagd(a=boolean())
    first = parse(doc)
    change(doc)
    second = parse(doc, reuse=first)
    assert second.flags["a"] is not first.flags["a"]


def test_other_options_compile_every_flag_again():
    doc = flagd(a=boolean(targeting={"fractional": [["on", 50], ["off", 50]]}))
    first = parse(doc, fractional="v2")
    second = parse(doc, reuse=first, fractional="v3")
    assert second.flags["a"] is not first.flags["a"]


def test_a_broken_flag_is_never_reused_so_its_problem_is_reported_again():
    doc = flagd(a=boolean(), bad={"state": "ENABLED", "variants": {}, "defaultVariant": None})
    first = parse(doc, invalid_flags="isolate")
    second = parse(doc, reuse=first, invalid_flags="isolate")
    assert [p.flag for p in second.problems] == ["bad"]
    assert second.flags["a"] is first.flags["a"]
    with pytest.raises(FlagFileError):
        parse(doc, reuse=first)  # reject mode still refuses the file


def test_simple_flags_are_reused_too():
    first = parse({"flags": {"a": {"enabled": True, "rollout_percentage": 30}, "b": {"enabled": False}}})
    second = parse({"flags": {"a": {"enabled": True, "rollout_percentage": 30}, "b": {"enabled": True}}}, reuse=first)
    assert second.flags["a"] is first.flags["a"]
    assert evaluate(second.flags, "b", {}).value is True
