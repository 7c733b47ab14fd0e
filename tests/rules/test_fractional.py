"""flagd's ``fractional`` operator, v1, v2 and v3 bucketing."""

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


def legacy_bucket(signed_hash: int, weights: list[int]) -> int | None:
    """flagd v0.14's distributeValue, step by step: the first bucket whose running end exceeds the point."""
    point = abs(float(signed_hash)) / 2147483647.0 * 100.0
    end = 0.0
    for index, weight in enumerate(weights):
        end += 100.0 * float(weight) / float(sum(weights))
        if point < end:
            return index
    return None


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


@pytest.mark.parametrize("key", [f"user-{i}" for i in range(40)] + ["jon@company.com", "é✓"])
@pytest.mark.parametrize("weights", [[25, 25, 25, 25], [1, 2, 4], [10, 0, 90], [1] * 7])
def test_v1_places_the_signed_hash_by_legacy_float_percentages(key: str, weights: list[int]) -> None:
    rule = [[f"v{i}", weight] for i, weight in enumerate(weights)]
    index = legacy_bucket(mmh3.hash(("my-flag" + key).encode(), 0, True), weights)
    assert index is not None
    assert fractional(rule, {"targetingKey": key}, "v1", flag_key="my-flag") == f"v{index}"


def test_v1_and_v2_put_some_users_in_different_buckets() -> None:
    keys = [{"targetingKey": f"user-{i}"} for i in range(200)]
    v1 = [fractional(FOUR_SUITS, key, "v1") for key in keys]
    v2 = [fractional(FOUR_SUITS, key, "v2") for key in keys]
    assert sum(a != b for a, b in zip(v1, v2)) > 100  # independent placements differ 3 times in 4


# Subjects whose murmur3 is a boundary (from flagd-testbed's hash edge cases), read as int32.
EDGE_ZERO, EDGE_ONE, EDGE_MAX, EDGE_MIN, EDGE_MINUS_ONE = "ejOoVL", "bY9fO-", "SI7p-", "6LvT0", "ceQdGm"


@pytest.mark.parametrize(
    ("subject", "two_way", "seven_way"),
    [
        (EDGE_ZERO, "v0", "v0"),
        (EDGE_ONE, "v0", "v0"),
        (EDGE_MINUS_ONE, "v0", "v0"),  # abs(-1): the same point as +1
        # point exactly 100.0: past 50 + 50, but inside 7 x 14.28..., whose running sum is 100.00000000000001
        (EDGE_MAX, None, "v6"),
        (EDGE_MIN, None, None),  # abs(-2**31) / (2**31 - 1): just above 100, in no bucket
    ],
)
def test_v1_edge_hashes_land_where_legacy_flagd_put_them_or_nowhere(subject: str, two_way, seven_way) -> None:
    by_id = [{"var": "id"}]
    assert fractional(by_id + [["v0", 50], ["v1", 50]], {"id": subject}, "v1") == two_way
    assert fractional(by_id + [[f"v{i}", 1] for i in range(7)], {"id": subject}, "v1") == seven_way
    assert fractional(by_id + [["v0", 50], ["v1", 50]], {"id": subject}, "v2") is not None  # v2 has no gap


def test_v1_bucketing_subject_is_the_v2_one() -> None:
    rule = [{"var": "absent"}, ["a", 1], ["b", 1]]
    shorthand = [["a", 1], ["b", 1]]
    for key in (f"k{i}" for i in range(20)):
        assert fractional(rule, {"targetingKey": key}, "v1") == fractional(shorthand, {"targetingKey": key}, "v1")
    assert fractional([{"var": "id"}, ["a", 1]], {"id": 5}, "v1") is None
    assert fractional([{"var": "id"}, ["a", 1]], {"id": "\ud800"}, "v1") is None


def test_v1_weights_computed_per_call_place_like_the_same_literal_weights() -> None:
    computed = [{"var": "targetingKey"}, ["a", {"var": "wa"}], ["b", {"var": "wb"}], ["c", 3]]
    for wa, wb in ((1, 1), (0, 5), (-4, 2), (20, 7)):
        literal = [{"var": "targetingKey"}, ["a", max(wa, 0)], ["b", wb], ["c", 3]]
        for key in (f"u{i}" for i in range(30)):
            context = {"targetingKey": key, "wa": wa, "wb": wb}
            assert fractional(computed, context, "v1") == fractional(literal, context, "v1")
    assert fractional(computed, {"targetingKey": "u", "wa": 0, "wb": 0}, "v1") == "c"
    assert fractional([{"var": "id"}, ["a", {"var": "w"}]], {"id": EDGE_MIN, "w": 1}, "v1") is None


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
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
