"""Simple-format flags: allow lists, stable percentage rollouts, and the seed configuration."""

from __future__ import annotations

import json

import mmh3
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.evaluate import evaluate
from agent.engine.formats.document import parse_flag_document
from agent.engine.formats.simple import rollout_bucket

from tests.helpers import SEED

USERS = [f"user-{i}" for i in range(4000)]


def simple(flags: dict):
    return parse_flag_document(json.dumps({"flags": flags}).encode(), "s.json").flags


def has(flags, key: str, user: str | None) -> bool:
    return evaluate(flags, key, {} if user is None else {"targetingKey": user}).value


def test_seed_configuration_answers_as_documented():
    flags = parse_flag_document(json.dumps(SEED).encode(), "seed.json").flags
    assert evaluate(flags, "dark_mode", None).value is True
    assert evaluate(flags, "experimental_search", {"targetingKey": "user_123"}).value is False
    for user in ("user_123", "user_456"):
        res = evaluate(flags, "new_checkout_flow", {"targetingKey": user})
        assert (res.value, res.variant, res.reason) == (True, "on", "TARGETING_MATCH")
    share = sum(has(flags, "new_checkout_flow", u) for u in USERS) / len(USERS)
    assert 0.22 < share < 0.28


def test_disabled_simple_flag_is_off_and_static_even_for_listed_users():
    flags = simple({"f": {"enabled": False, "rollout_percentage": 100, "allowed_users": ["u1"]}})
    res = evaluate(flags, "f", {"targetingKey": "u1"})
    assert (res.value, res.variant, res.reason, res.error_code) == (False, "off", "STATIC", None)


def test_full_or_unset_rollout_is_on_and_static():
    flags = simple({"a": {"enabled": True}, "b": {"enabled": True, "rollout": 100}, "c": {"enabled": True, "rollout_percentage": None}})
    for key in flags:
        res = evaluate(flags, key, None)
        assert (res.value, res.variant, res.reason) == (True, "on", "STATIC")


def test_zero_rollout_without_users_is_off_and_static():
    res = evaluate(simple({"f": {"enabled": True, "rollout": 0}}), "f", {"targetingKey": "u"})
    assert (res.value, res.reason) == (False, "STATIC")


def test_partial_rollout_without_targeting_key_is_off_with_reason_default():
    flags = simple({"f": {"enabled": True, "rollout": 50}})
    for context in (None, {}, {"targetingKey": ""}, {"targetingKey": 42}):
        res = evaluate(flags, "f", context)
        assert (res.value, res.variant, res.reason) == (False, "off", "DEFAULT")


def test_rollout_bucket_is_flagd_v2_bucketing_of_flag_key_and_user():
    assert rollout_bucket("f", "u1") == (mmh3.hash("fu1", 0, signed=False) * 100) >> 32
    flags = simple({"f": {"enabled": True, "rollout": 30}})
    for user in USERS[:500]:
        assert has(flags, "f", user) == (rollout_bucket("f", user) < 30)


def test_users_outside_the_rollout_get_off_as_a_targeting_match():
    flags = simple({"f": {"enabled": True, "rollout": 1}})
    user = next(u for u in USERS if rollout_bucket("f", u) >= 1)
    res = evaluate(flags, "f", {"targetingKey": user})
    assert (res.value, res.variant, res.reason) == (False, "off", "TARGETING_MATCH")


@given(st.integers(0, 99), st.integers(0, 100), st.text(min_size=1))
def test_raising_the_percentage_never_takes_the_flag_from_anyone(low, extra, user):
    high = min(100, low + extra)
    before = simple({"f": {"enabled": True, "rollout": low}})
    after = simple({"f": {"enabled": True, "rollout": high}})
    if has(before, "f", user):
        assert has(after, "f", user)


def test_flags_bucket_users_independently():
    flags = simple({"a": {"enabled": True, "rollout": 50}, "b": {"enabled": True, "rollout": 50}})
    a = {u for u in USERS if has(flags, "a", u)}
    b = {u for u in USERS if has(flags, "b", u)}
    both = len(a & b) / len(USERS)
    assert 0.2 < both < 0.3  # about 50% x 50%, not 50% (the same users) nor 0%


def test_simple_flags_are_booleans_for_type_checks():
    flags = simple({"f": {"enabled": True, "rollout": 50}})
    assert evaluate(flags, "f", {"targetingKey": "u"}, expected_type="boolean").error_code is None
    assert evaluate(flags, "f", {"targetingKey": "u"}, expected_type="string").error_code == "TYPE_MISMATCH"
    assert evaluate(simple({"s": {"enabled": True}}), "s", None, expected_type="integer").error_code == "TYPE_MISMATCH"
