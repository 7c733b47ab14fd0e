"""Core JSON Logic operators, with json-logic-js (JavaScript) semantics.

Cases are (rule, data, expected) in the style of jsonlogic.com's shared test suite,
written for this project; each group is named after the behaviour it pins down.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from agent.engine.rules import compile_rule


def run(rule: Any, data: Any = None) -> Any:
    return compile_rule(rule, flag_key="flag", strict=False)(data)


def check(cases: list[tuple[Any, Any, Any]]) -> None:
    for rule, data, expected in cases:
        result = run(rule, data)
        assert result == expected and type(result) is type(expected), (rule, data, result)


def test_if_picks_the_first_truthy_branch_and_else_is_optional() -> None:
    check([
        ({"if": [True, "yes", "no"]}, None, "yes"),
        ({"if": [False, "yes", "no"]}, None, "no"),
        ({"if": [False, "a", False, "b", True, "c"]}, None, "c"),
        ({"if": [False, "a", False, "b", "else"]}, None, "else"),
        ({"if": [False, "a", False, "b"]}, None, None),
        ({"if": [True, "yes"]}, None, "yes"),
        ({"if": [False, "yes"]}, None, None),
        ({"if": [True]}, None, True),
        ({"if": []}, None, None),
        ({"?:": [{"var": "x"}, "t", "f"]}, {"x": [1]}, "t"),
        ({"?:": [{"var": "x"}, "t", "f"]}, {"x": []}, "f"),
        ({"if": [{"var": "a"}, "A", {"var": "b"}, "B", "none"]}, {"b": 1}, "B"),
    ])


def test_truthiness_follows_javascript_except_that_empty_arrays_are_false() -> None:
    check([
        ({"!!": [0]}, None, False),
        ({"!!": [0.0]}, None, False),
        ({"!!": ["0"]}, None, True),
        ({"!!": [""]}, None, False),
        ({"!!": [[]]}, None, False),
        ({"!!": [[0]]}, None, True),
        ({"!!": [{"var": "o"}]}, {"o": {}}, True),
        ({"!!": [None]}, None, False),
        ({"!": [True]}, None, False),
        ({"!": True}, None, False),
        ({"!": [[]]}, None, True),
        ({"!": []}, None, True),
    ])


def test_and_or_return_the_deciding_operand() -> None:
    check([
        ({"and": [True, "a", 3]}, None, 3),
        ({"and": [True, "", 3]}, None, ""),
        ({"and": [{"var": "x"}, "then"]}, {"x": 0}, 0),
        ({"or": [False, 0, "a"]}, None, "a"),
        ({"or": [False, 0, ""]}, None, ""),
        ({"or": [{"var": "x"}, {"var": "y"}]}, {"y": "b"}, "b"),
        ({"or": [{"var": "x"}, {"var": "y"}, {"var": "z"}]}, {"z": [1]}, [1]),
        ({"and": [{"var": "x"}, {"var": "y"}, "last"]}, {"x": 1, "y": 1}, "last"),
        ({"and": []}, None, None),
    ])


def test_loose_equality_coerces_like_javascript() -> None:
    check([
        ({"==": [1, 1]}, None, True),
        ({"==": [1, "1"]}, None, True),
        ({"==": [1, 1.0]}, None, True),
        ({"==": [0, False]}, None, True),
        ({"==": ["", 0]}, None, True),
        ({"==": ["1", True]}, None, True),
        ({"==": [None, 0]}, None, False),
        ({"==": [None, None]}, None, True),
        ({"==": [None, False]}, None, False),
        ({"==": ["abc", {"var": "x"}]}, {"x": ["abc"]}, True),
        ({"==": [{"var": "x"}, "1,2"]}, {"x": [1, 2]}, True),
        ({"==": [{"var": "x"}, {"var": "y"}]}, {"x": [1], "y": [1]}, False),
        ({"!=": [1, "2"]}, None, True),
        ({"!=": [1, "1"]}, None, False),
        ({"==": [{"var": "s"}, "jack"]}, {"s": "jack"}, True),
        ({"==": [{"var": "s"}, "1"]}, {"s": 1}, True),
        ({"!=": [{"var": "s"}, "1"]}, {"s": 1.0}, False),
    ])


def test_strict_equality_needs_the_same_type() -> None:
    check([
        ({"===": [1, 1]}, None, True),
        ({"===": [1, 1.0]}, None, True),
        ({"===": [1, "1"]}, None, False),
        ({"===": [1, True]}, None, False),
        ({"===": [None, None]}, None, True),
        ({"!==": [1, 2]}, None, True),
        ({"!==": [1, "1"]}, None, True),
        ({"===": [{"var": "x"}, "a"]}, {"x": "a"}, True),
        ({"===": [{"var": "x"}, "1"]}, {"x": 1}, False),
        ({"===": [{"var": "x"}, {"var": "x"}]}, {"x": [1]}, True),
        ({"===": [{"var": "x"}]}, {}, False),
    ])


def test_ordering_compares_strings_as_strings_and_everything_else_as_numbers() -> None:
    check([
        ({">": [2, 1]}, None, True),
        ({">=": [1, 1]}, None, True),
        ({"<": [1, 2]}, None, True),
        ({"<=": [1, 1]}, None, True),
        ({"<": ["10", "9"]}, None, True),
        ({"<": ["10", 9]}, None, False),
        ({"<": [None, 1]}, None, True),
        ({"<": ["a", 1]}, None, False),
        ({">": ["a", 1]}, None, False),
        ({"<": [False, True]}, None, True),
        ({"<": [[2], 3]}, None, True),
        ({">": [{"var": "t"}, 1700000000]}, {"t": 1750000000}, True),
    ])


def test_less_than_with_three_operands_is_between() -> None:
    check([
        ({"<": [1, 2, 3]}, None, True),
        ({"<": [1, 1, 3]}, None, False),
        ({"<": [1, 4, 3]}, None, False),
        ({"<=": [1, 1, 3]}, None, True),
        ({"<=": [1, 4, 3]}, None, False),
        ({"<": [0, {"var": "temp"}, 100]}, {"temp": 37}, True),
    ])


def test_arithmetic_casts_strings_and_keeps_whole_numbers_integers() -> None:
    check([
        ({"+": [4, 2]}, None, 6),
        ({"+": [2, 2, 2, 2, 2]}, None, 10),
        ({"+": ["3.14"]}, None, 3.14),
        ({"+": ["1", "1"]}, None, 2),
        ({"+": [0.5, 0.5]}, None, 1),
        ({"-": [4, 2]}, None, 2),
        ({"-": [2]}, None, -2),
        ({"-": ["-2"]}, None, 2),
        ({"*": [2, 2, 2, 2, 2]}, None, 32),
        ({"*": ["2", 3]}, None, 6),
        ({"/": [4, 2]}, None, 2),
        ({"/": [1, 4]}, None, 0.25),
        ({"%": [101, 2]}, None, 1),
        ({"%": [-7, 2]}, None, -1),
        ({"%": [7.5, 2]}, None, 1.5),
        ({"max": [1, 2, 3]}, None, 3),
        ({"min": [1, 2, 3]}, None, 1),
        ({"max": [1, "5"]}, None, 5),
    ])


def test_arithmetic_edge_cases_give_javascript_numbers_not_exceptions() -> None:
    assert run({"/": [1, 0]}) == math.inf
    assert run({"/": [-1, 0]}) == -math.inf
    assert math.isnan(run({"/": [0, 0]}))
    assert math.isnan(run({"%": [1, 0]}))
    assert math.isnan(run({"+": ["abc", 1]}))
    assert math.isnan(run({"max": [1, "x"]}))
    assert run({"max": []}) == -math.inf
    assert run({"+": ["12px", 1]}) == 13  # parseFloat takes the leading number


def test_cat_stringifies_like_javascript() -> None:
    check([
        ({"cat": ["I love", " pie"]}, None, "I love pie"),
        ({"cat": ["a", 1, 1.0, 1.5, True, False, None]}, None, "a111.5truefalsenull"),
        ({"cat": [{"var": "x"}]}, {"x": [1, None, [2, 3]]}, "1,,2,3"),
        ({"cat": [{"var": "x"}]}, {"x": {"a": 1}}, "[object Object]"),
        ({"cat": [0.1, 1e21, 1e-7, 123456789.125]}, None, "0.11e+211e-7123456789.125"),
        (
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
            {"$flagd": {"flagKey": "f"}, "user": {"name": "jack"}},
            "fjack",
        ),
    ])


def test_substr_counts_negative_start_and_length_from_the_end() -> None:
    check([
        ({"substr": ["jsonlogic", 4]}, None, "logic"),
        ({"substr": ["jsonlogic", -5]}, None, "logic"),
        ({"substr": ["jsonlogic", 1, 3]}, None, "son"),
        ({"substr": ["jsonlogic", 4, -2]}, None, "log"),
        ({"substr": ["jsonlogic", -50]}, None, "jsonlogic"),
        ({"substr": ["jsonlogic", 50]}, None, ""),
        ({"substr": [12345, 1, 2]}, None, "23"),
    ])


def test_in_is_substring_for_strings_and_strict_membership_for_arrays() -> None:
    check([
        ({"in": ["Ringo", ["John", "Paul", "George", "Ringo"]]}, None, True),
        ({"in": ["Yoko", ["John", "Paul"]]}, None, False),
        ({"in": ["Spring", "Springfield"]}, None, True),
        ({"in": ["", "abc"]}, None, True),
        ({"in": ["", ""]}, None, False),
        ({"in": [{"var": "n"}, ["1", "2"]]}, {"n": 1}, False),
        ({"in": [{"var": "n"}, [1, 2]]}, {"n": 1.0}, True),
        ({"in": [{"var": "n"}, [1, 2]]}, {"n": True}, False),
        ({"in": [{"var": "n"}, [1, "a", None]]}, {"n": None}, True),
        ({"in": [{"var": "n"}, "a1b"]}, {"n": 1}, True),
        ({"in": [{"var": "u"}, {"var": "list"}]}, {"u": "x", "list": ["x"]}, True),
        ({"in": [{"var": "u"}, []]}, {"u": "x"}, False),
        ({"in": ["a", None]}, None, False),
    ])


def test_map_filter_reduce_scope_var_to_the_item() -> None:
    data = {"integers": [1, 2, 3, 4, 5], "list": [1], "pies": [{"filling": "apple"}, {"filling": "cherry"}]}
    check([
        ({"map": [{"var": "integers"}, {"*": [{"var": ""}, 2]}]}, data, [2, 4, 6, 8, 10]),
        ({"filter": [{"var": "integers"}, {"%": [{"var": ""}, 2]}]}, data, [1, 3, 5]),
        ({"reduce": [{"var": "integers"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, data, 15),
        ({"reduce": [{"var": "integers"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, {"var": "list.0"}]}, data, 16),
        ({"map": [{"var": "pies"}, {"var": "filling"}]}, data, ["apple", "cherry"]),
        ({"map": [{"var": "nothing"}, {"var": ""}]}, data, []),
        ({"filter": [{"var": "nothing"}, True]}, data, []),
        ({"reduce": [{"var": "nothing"}, {"var": "current"}, 7]}, data, 7),
    ])


def test_all_none_some_quantify_over_items_and_all_of_empty_is_false() -> None:
    data = {"pies": [{"filling": "apple"}, {"filling": "cherry"}]}
    check([
        ({"all": [[1, 2, 3], {">": [{"var": ""}, 0]}]}, None, True),
        ({"all": [[1, -2, 3], {">": [{"var": ""}, 0]}]}, None, False),
        ({"all": [[], True]}, None, False),
        ({"some": [[-1, 0, 1], {">": [{"var": ""}, 0]}]}, None, True),
        ({"some": [[], True]}, None, False),
        ({"none": [[-3, -2, -1], {">": [{"var": ""}, 0]}]}, None, True),
        ({"none": [[], True]}, None, True),
        ({"some": [{"var": "pies"}, {"==": [{"var": "filling"}, "apple"]}]}, data, True),
        ({"all": [{"var": "pies"}, {"==": [{"var": "filling"}, "apple"]}]}, data, False),
        ({"all": [{"var": "missing"}, True]}, data, False),
    ])


def test_merge_flattens_one_level() -> None:
    check([
        ({"merge": [[1, 2], [3, 4]]}, None, [1, 2, 3, 4]),
        ({"merge": [1, 2, [3, 4]]}, None, [1, 2, 3, 4]),
        ({"merge": [[1, [2]], {"var": "x"}]}, {"x": 3}, [1, [2], 3]),
        ({"in": [{"var": "x"}, {"merge": [["a"], ["b"]]}]}, {"x": "b"}, True),
    ])


def test_arrays_of_rules_are_evaluated_item_by_item() -> None:
    check([
        ({"merge": [[{"var": "a"}, 1, [{"var": "b"}]]]}, {"a": "A", "b": "B"}, ["A", 1, ["B"]]),
        ({"if": [True, [{"var": "a"}, "x"], None]}, {"a": 2}, [2, "x"]),
    ])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [({"==": [{"var": "x"}, 1]}, True), ({"cat": ["v", {"var": "x"}]}, "v1")],
)
def test_operators_take_a_lone_operand_without_the_array(rule: dict, expected: Any) -> None:
    assert run({"var": "x"}, {"x": 1}) == run({"var": ["x"]}, {"x": 1}) == 1
    assert run(rule, {"x": 1}) == expected
