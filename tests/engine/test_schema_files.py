"""flagd's JSON-schema test files: every positive is accepted, every negative refused at its spot.

Read from ``../shared/conformance/flagd-schemas/json/test`` next to the project (skipped with a
message when absent). Targeting examples are bare rules, so they are tried as the targeting of a
flag. ``flags/negative/with-array-flags.json`` is negative only for the providers' schema: the
array form is flagd's own extension, which flagsock accepts (see the last test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE

from agent.engine.formats.document import FlagFileError, parse_flag_document

SCHEMA_TESTS = CONFORMANCE / "flagd-schemas" / "json" / "test"
pytestmark = pytest.mark.skipif(not SCHEMA_TESTS.is_dir(), reason=f"flagd schema tests not found at {SCHEMA_TESTS}")

ARRAY_FORM = "with-array-flags.json"

# Where the problem of each negative flag file is.
NEGATIVE_FLAG_FILES = {
    "empty-variants.json": "$.flags.myBoolFlag.variants",
    "malformed-flag.json": "$.flags.not-a-flag.",
    "missing-variants.json": "$.flags.myBoolFlag.variants",
    "mixed-variant-types.ffconfig.json": "$.flags.myBoolFlag.variants.off",
    "state-set-incorrectly.json": "$.flags.myBoolFlag.state",
    "with-invalid-flag-metadata.json": "$.flags.myBoolFlag.metadata.invalid",
    "with-invalid-flag-set-metadata.json": "$.metadata.invalid",
    "with-invalid-targeting.json": "$.flags.targetedFlag.targeting",
}


def _files(kind: str, polarity: str) -> list[Path]:
    folder = SCHEMA_TESTS / kind / polarity
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _as_flag(rule: dict) -> bytes:
    """A bare targeting rule as the targeting of a string flag (with a stand-in for its $refs)."""
    return json.dumps({
        "flags": {"f": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a", "targeting": rule}},
        "$evaluators": {"some-ref": {"==": [{"var": "env"}, "production"]}},
    }).encode()


@pytest.mark.parametrize("path", _files("flags", "positive") + _files("flagd", "positive"), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_positive_flag_file_is_accepted(path: Path):
    parsed = parse_flag_document(path.read_bytes(), path.name)
    assert parsed.flags and parsed.problems == ()


@pytest.mark.parametrize("path", _files("targeting", "positive"), ids=lambda p: p.name)
def test_positive_targeting_is_accepted(path: Path):
    parsed = parse_flag_document(_as_flag(json.loads(path.read_text())), path.name)
    assert parsed.problems == ()


def test_every_negative_flag_file_has_an_expected_spot():
    names = {p.name for p in _files("flags", "negative")} - {ARRAY_FORM}
    assert names == set(NEGATIVE_FLAG_FILES)


@pytest.mark.parametrize("name", sorted(NEGATIVE_FLAG_FILES))
def test_negative_flag_file_is_refused_at_the_broken_spot(name: str):
    path = SCHEMA_TESTS / "flags" / "negative" / name
    with pytest.raises(FlagFileError) as info:
        parse_flag_document(path.read_bytes(), name)
    spot = NEGATIVE_FLAG_FILES[name]
    assert any(p.path.startswith(spot) for p in info.value.problems), info.value.problems
    assert all(p.source == name and p.message for p in info.value.problems)


@pytest.mark.parametrize("path", _files("targeting", "negative"), ids=lambda p: p.name)
def test_negative_targeting_is_refused_inside_the_targeting(path: Path):
    with pytest.raises(FlagFileError) as info:
        parse_flag_document(_as_flag(json.loads(path.read_text())), path.name)
    assert all(p.path.startswith("$.flags.f.targeting") for p in info.value.problems), info.value.problems


def test_array_form_that_the_providers_schema_refuses_is_accepted():
    path = SCHEMA_TESTS / "flags" / "negative" / ARRAY_FORM
    parsed = parse_flag_document(path.read_bytes(), path.name)
    assert set(parsed.flags) == {"myBoolFlag"} and parsed.format == "flagd"
