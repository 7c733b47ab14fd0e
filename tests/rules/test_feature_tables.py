"""flagd's operator features (fractional, sem_ver, starts_with/ends_with), row by row.

The whole Gherkin suite runs end to end elsewhere; here each Examples row is evaluated
directly against the compiled rule, so a wrong bucket or version comparison points at
this package and not at the loader or the socket.
"""

from __future__ import annotations

import pytest

from agent.engine.rules import RuleError, resolve_refs

from .conformance import Example, examples, load_json, resolve

EVALUATOR_FEATURES = ["fractional.feature", "semver.feature", "string.feature"]
TARGETING_OPERATOR_TAGS = {"@fractional", "@semver", "@string", "@operator-errors"}


def _evaluator_examples() -> list[Example]:
    found = []
    for name in EVALUATOR_FEATURES:
        found += examples("flagd-testbed", "evaluator", "gherkin", name)
    return found


def _targeting_examples() -> list[Example]:
    return [
        example
        for example in examples("flagd-testbed", "gherkin", "targeting.feature")
        if example.tags & TARGETING_OPERATOR_TAGS
    ]


def _flags(*parts: str) -> dict:
    document = load_json(*parts)
    evaluators = document.get("$evaluators", {})
    flags = {}
    for key, flag in document["flags"].items():
        try:
            flags[key] = {**flag, "targeting": resolve_refs(flag.get("targeting") or {}, evaluators)}
        except RuleError:
            flags[key] = flag  # compiling the unresolved $ref fails: an ERROR resolution
    return flags


def _versions(example: Example) -> list[str]:
    """A tagged example holds for its version; an untagged one is checked under v2."""
    version = example.version
    return [version] if version else ["v2"]


def _check(flags: dict, example: Example) -> None:
    expected_value, expected_reason = example.expected()
    for version in _versions(example):
        value, reason = resolve(flags[example.flag_key], example, version)
        assert str(value) == expected_value, (version, example.row)
        if expected_reason is not None:
            assert reason == expected_reason, (version, example.row)


def test_evaluator_operator_features_resolve_every_example() -> None:
    flags = _flags("flagd-testbed", "evaluator", "flags", "testkit-flags.json")
    checked = _evaluator_examples()
    assert len(checked) > 40
    assert sum(1 for example in checked if example.version == "v1") >= 15
    for example in checked:
        _check(flags, example)


def test_provider_targeting_operator_examples_resolve_in_every_version() -> None:
    flags: dict = {}
    for name in ("custom-ops.json", "edge-case-flags.json", "evaluator-refs.json"):
        flags.update(_flags("flagd-testbed", "flags", name))
    checked = [example for example in _targeting_examples() if example.flag_key in flags]
    assert sum(1 for example in checked if example.version == "v3") > 100
    assert sum(1 for example in checked if example.version == "v1") >= 15
    failures = []
    for example in checked:
        try:
            _check(flags, example)
        except AssertionError as error:
            failures.append(f"{example.name} {example.flag_key} {error}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("targeting_key", "bucket"),
    [("ejOoVL", "lower"), ("bY9fO-", "lower"), ("SI7p-", "lower"), ("6LvT0", "upper"), ("ceQdGm", "upper")],
)
def test_fractional_v2_hash_edge_values_land_in_the_documented_bucket(targeting_key: str, bucket: str) -> None:
    from agent.engine.rules import compile_rule

    rule = {"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]}
    fn = compile_rule(rule, flag_key="fractional-hash-edge-flag")
    assert fn({"targetingKey": targeting_key}) == bucket
