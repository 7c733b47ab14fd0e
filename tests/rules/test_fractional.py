"""flagd's ``fractional`` operator, v2 and v3 bucketing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import mmh3
import pytest

from agent.engine.rules import RuleError, compile_rule
from agent.engine.rules.cbor import encode

FOUR_SUITS = [["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]


def fractional(
    rule_args: list, context: dict, version: str = "v2", *, flag_key: str = "flag", strict: bool = True
) -> Any:
    fn = compile_rule({"fractional": rule_args}, flag_key=flag_key, fractional=version, strict=strict)
    return fn(context)


def expected_bucket(hashed: int, weights: list[int]) -> int:
    bucket = (hashed * sum(weights)) >> 32
    end = 0
    for index, weight in enumerate(weights):
        end += weight
        if bucket < end:
            return index
    raise AssertionError("bucket beyond the weights")


@pytest.mark.parametrize("key", ["jon@company.com", "jane@company.com", "user-1", "é✓", "x" * 300])
def test_v2_shorthand_hashes_flag_key_then_targeting_key(key: str) -> None:
    hashed = mmh3.hash(("my-flag" + key).encode(), 0, False)
    index = expected_bucket(hashed, [25, 25, 25, 25])
    assert fractional(FOUR_SUITS, {"targetingKey": key}, flag_key="my-flag") == FOUR_SUITS[index][0]


@pytest.mark.parametrize("key", ["jon@company.com", "jane@company.com", "user-1", "é✓"])
def test_v3_shorthand_hashes_the_cbor_array_of_flag_key_and_targeting_key(key: str) -> None:
    hashed = mmh3.hash(encode(["my-flag", key]), 0, False)
    index = expected_bucket(hashed, [25, 25, 25, 25])
    assert fractional(FOUR_SUITS, {"targetingKey": key}, "v3", flag_key="my-flag") == FOUR_SUITS[index][0]


@pytest.mark.parametrize("version", ["v2", "v3"])
@pytest.mark.parametrize("context", [{}, {"targetingKey": ""}, {"targetingKey": 12345}, {"targetingKey": None}])
def test_shorthand_without_a_string_targeting_key_is_null(version: str, context: dict) -> None:
    assert fractional(FOUR_SUITS, context, version) is None


def test_v2_bucketing_expression_must_give_a_string() -> None:
    rule = [{"var": "id"}, ["a", 1], ["b", 1]]
    assert fractional(rule, {"id": 5}) is None
    assert fractional(rule, {"id": "5"}) in ("a", "b")


def test_v2_null_bucketing_value_falls_back_to_the_targeting_key_like_flagd() -> None:
    rule = [{"var": "absent"}, ["a", 1], ["b", 1]]
    assert fractional(rule, {"targetingKey": "k"}) == fractional([["a", 1], ["b", 1]], {"targetingKey": "k"})
    assert fractional(rule, {}) is None


def test_v3_hashes_any_json_bucketing_value_and_null_is_null() -> None:
    rule = [{"var": "id"}, ["a", 1], ["b", 1]]
    for value in (5, 5.0, True, [1, "x"], {"k": [None]}):
        hashed = mmh3.hash(encode(value), 0, False)
        assert fractional(rule, {"id": value}, "v3") == "ab"[expected_bucket(hashed, [1, 1])]
    assert fractional(rule, {"id": 5}, "v3") == fractional(rule, {"id": 5.0}, "v3")
    assert fractional(rule, {}, "v3") is None


def test_a_lone_surrogate_bucketing_string_is_null_rather_than_a_crash() -> None:
    rule = [{"var": "id"}, ["a", 1]]
    assert fractional(rule, {"id": "\ud800"}) is None
    assert fractional(rule, {"id": "\ud800"}, "v3") is None


def test_weights_default_to_one_and_split_evenly() -> None:
    counts = Counter(fractional([["heads"], ["tails"]], {"targetingKey": f"user-{i}"}) for i in range(4000))
    assert set(counts) == {"heads", "tails"}
    assert abs(counts["heads"] - 2000) < 200


def test_single_entry_and_zero_weight_entries() -> None:
    assert fractional([["only", 1]], {"targetingKey": "x"}) == "only"
    for key in ("a", "b", "c", "d"):
        assert fractional([["never", 0], ["always", 5]], {"targetingKey": key}) == "always"
    assert fractional([{"var": "targetingKey"}, ["one", 0], ["two", 0]], {"targetingKey": "x"}) is None


def test_variants_and_weights_may_be_expressions_evaluated_per_call() -> None:
    rule = [{"var": "targetingKey"}, [{"var": "color"}, {"if": [{"var": "on"}, 100, 0]}], ["blue", 10]]
    assert fractional(rule, {"targetingKey": "u", "color": "red", "on": True}) in ("red", "blue")
    assert fractional(rule, {"targetingKey": "u", "color": "red", "on": False}) == "blue"
    rollout = [["on", {"-": [{"var": "$flagd.timestamp"}, 100]}], ["off", {"-": [200, {"var": "$flagd.timestamp"}]}]]
    assert fractional(rollout, {"targetingKey": "u", "$flagd": {"timestamp": 50}}) == "off"  # on: -50 -> 0
    assert fractional(rollout, {"targetingKey": "u", "$flagd": {"timestamp": 250}}) == "on"  # off: -50 -> 0
    assert fractional([["on", {"var": "w"}]], {"targetingKey": "u", "w": 0.5}) is None
    assert fractional([["on", {"var": "w"}]], {"targetingKey": "u", "w": "1"}) is None


def test_variants_may_be_non_strings_or_nested_fractionals() -> None:
    rule = [["clubs", 0], [True, 0], [1, 1], [{"fractional": [["inner", 1]]}, 0]]
    assert fractional(rule, {"targetingKey": "x"}) == 1
    nested = [[{"fractional": [["inner", 1]]}, 1]]
    assert fractional(nested, {"targetingKey": "x"}) == "inner"


def test_total_weight_above_max_int32_is_null() -> None:
    assert fractional([["a", 2**31 - 1], ["b", 1]], {"targetingKey": "x"}) is None
    assert fractional([["a", 2**31 - 1]], {"targetingKey": "x"}) == "a"


@pytest.mark.parametrize(
    ("rule", "where", "what"),
    [
        ([["a", 25], ["b", 25.5]], "fractional[1][1]", "non-negative integer"),
        ([["a", 25], ["b", "25"]], "fractional[1][1]", "non-negative integer"),
        ([["a", 25], ["b", True]], "fractional[1][1]", "non-negative integer"),
        ([["a", 25], ["b", -25]], "fractional[1][1]", "must not be negative"),
        (["invalid", ["a", 25]], "fractional[0]", "bucketing value must be an expression"),
        ([None, ["a"]], "fractional[0]", "bucketing value must be an expression"),
        ([["a", 1], "b"], "fractional[1]", "[variant] or [variant, weight]"),
        ([["a", 1], []], "fractional[1]", "[variant] or [variant, weight]"),
        ([["a", 1, 2]], "fractional[0]", "[variant] or [variant, weight]"),
    ],
)
def test_schema_refused_fractionals_name_the_offending_item(rule: list, where: str, what: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule({"fractional": rule}, flag_key="f", path="$.flags.f.targeting")
    assert caught.value.path == f"$.flags.f.targeting.{where}"
    assert what in caught.value.message


def test_lenient_fractional_follows_flagd_at_run_time() -> None:
    context = {"targetingKey": "any-user"}
    assert fractional([{"var": "targetingKey"}, ["one", -50], ["two", 100]], context, strict=False) == "two"
    assert fractional([None, ["one"]], {}, strict=False) is None
    assert fractional([["a", 1], ["b", 2.5]], context, strict=False) is None
    assert fractional([["a", 25.0]], context) == "a"


def test_fractional_as_a_condition() -> None:
    rule = {"if": [{"fractional": [[False, 0], [True, 100]]}, "big", "small"]}
    assert compile_rule(rule, flag_key="f")({"targetingKey": "k"}) == "big"
