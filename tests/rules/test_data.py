"""``var``, ``missing`` and ``missing_some``: reading the evaluation context."""

from __future__ import annotations

from typing import Any

from agent.engine.rules import compile_rule


def run(rule: Any, data: Any) -> Any:
    return compile_rule(rule, flag_key="flag", strict=False)(data)


CONTEXT = {
    "targetingKey": "user-1",
    "$flagd": {"flagKey": "flag", "timestamp": 1750000000},
    "user": {"name": "jack", "tags": ["a", "b"], "address": {"city": "Ghent"}},
    "email": "jack@example.com",
    "nothing": None,
    "empty": "",
    "list": [10, 20, 30],
}


def test_var_follows_dotted_paths_through_objects_and_arrays() -> None:
    assert run({"var": "email"}, CONTEXT) == "jack@example.com"
    assert run({"var": "user.name"}, CONTEXT) == "jack"
    assert run({"var": "user.address.city"}, CONTEXT) == "Ghent"
    assert run({"var": "user.tags.1"}, CONTEXT) == "b"
    assert run({"var": "list.0"}, CONTEXT) == 10
    assert run({"var": 1}, ["zero", "one"]) == "one"
    assert run({"var": "$flagd.flagKey"}, CONTEXT) == "flag"
    assert run({"var": "$flagd.timestamp"}, CONTEXT) == 1750000000


def test_var_gives_the_default_only_for_absent_keys() -> None:
    assert run({"var": "absent"}, CONTEXT) is None
    assert run({"var": ["absent", "dflt"]}, CONTEXT) == "dflt"
    assert run({"var": ["user.absent", 5]}, CONTEXT) == 5
    assert run({"var": ["nothing.deeper", 5]}, CONTEXT) == 5
    assert run({"var": ["email.deeper", 5]}, CONTEXT) == 5
    assert run({"var": ["list.3", 5]}, CONTEXT) == 5
    assert run({"var": ["list.01", 5]}, CONTEXT) == 5
    assert run({"var": ["nothing", 5]}, CONTEXT) is None  # present, null (as in json-logic-js)
    assert run({"var": ["absent", {"var": "email"}]}, CONTEXT) == "jack@example.com"


def test_var_of_empty_path_is_the_whole_data() -> None:
    assert run({"var": ""}, 7) == 7
    assert run({"var": [""]}, [1]) == [1]
    assert run({"var": None}, "x") == "x"
    assert run({"var": []}, {"a": 1}) == {"a": 1}


def test_var_reads_length_and_characters_like_javascript() -> None:
    assert run({"var": "user.tags.length"}, CONTEXT) == 2
    assert run({"var": "email.0"}, CONTEXT) == "j"
    assert run({"var": "email.length"}, CONTEXT) == 16


def test_var_path_may_be_computed() -> None:
    rule = {"var": {"cat": ["user.", {"var": "field"}]}}
    assert run(rule, {**CONTEXT, "field": "name"}) == "jack"
    assert run({"var": [{"var": "which"}, "none"]}, {"which": "x"}) == "none"


def test_var_on_a_scalar_context_finds_nothing() -> None:
    assert run({"var": ["a", 1]}, 5) == 1
    assert run({"var": ["a.b", 1]}, None) == 1


def test_missing_lists_absent_null_and_empty_keys() -> None:
    assert run({"missing": ["email", "absent", "nothing", "empty", "user.name"]}, CONTEXT) == [
        "absent",
        "nothing",
        "empty",
    ]
    assert run({"missing": "absent"}, CONTEXT) == ["absent"]
    assert run({"missing": {"merge": [["email"], ["absent"]]}}, CONTEXT) == ["absent"]
    assert run({"if": [{"missing": ["email"]}, "incomplete", "ok"]}, CONTEXT) == "ok"


def test_missing_some_is_empty_once_enough_keys_are_present() -> None:
    assert run({"missing_some": [1, ["email", "absent"]]}, CONTEXT) == []
    assert run({"missing_some": [2, ["email", "absent"]]}, CONTEXT) == ["absent"]
    assert run({"missing_some": [{"var": "need"}, ["a", "b", "c"]]}, {"need": 1, "b": 1}) == []
