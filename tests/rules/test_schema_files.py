"""flagd's schema test files: positive targeting compiles, negative targeting is refused.

The files hold either a bare targeting rule or a whole flag file; both are handled. The
testbed's flag files deliberately contain rules the schema refuses but flagd serves
(e.g. a sem_ver with two operands); those must compile with ``strict=False``.
"""

from __future__ import annotations

import pytest

from agent.engine.rules import RuleError, compile_rule, resolve_refs

from .conformance import conformance_path, load_json

SCHEMA_TESTS = ("flagd-schemas", "json", "test", "targeting")


def _targetings(document: dict, source: str) -> list[tuple[str, object]]:
    """(path, targeting) of every rule in a schema test file."""
    if "flags" not in document:
        return [(f"{source}:$", document)]
    return [
        (f"{source}:$.flags.{key}.targeting", flag["targeting"])
        for key, flag in document["flags"].items()
        if "targeting" in flag
    ]


def _stub_refs(rule: object) -> object:
    """Resolve every ``$ref`` to a stand-in rule: the files test refs' shape, not their target."""
    names: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                names.add(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(rule)
    return resolve_refs(rule, {name: {"var": "stand-in"} for name in names})


def _files(kind: str) -> list[str]:
    folder = conformance_path(*SCHEMA_TESTS, kind)
    return sorted(path.name for path in folder.glob("*.json"))


def test_schema_test_folders_hold_cases() -> None:
    assert len(_files("positive")) >= 5
    assert len(_files("negative")) >= 5


@pytest.mark.parametrize("kind", ["positive"])
def test_every_positive_schema_targeting_compiles(kind: str) -> None:
    for name in _files(kind):
        for path, targeting in _targetings(load_json(*SCHEMA_TESTS, kind, name), name):
            compile_rule(_stub_refs(targeting), flag_key="f", path=path)


def test_every_negative_schema_file_has_a_refused_targeting() -> None:
    for name in _files("negative"):
        refusals = []
        for path, targeting in _targetings(load_json(*SCHEMA_TESTS, "negative", name), name):
            with pytest.raises(RuleError) as caught:
                compile_rule(_stub_refs(targeting), flag_key="f", path=path)
            refusals.append(caught.value)
        assert refusals, name
        assert all(error.path.startswith(f"{name}:$") and error.message for error in refusals)


def test_negative_schema_files_compile_leniently_except_what_cannot_run() -> None:
    # Every negative file is something flagd serves best effort (warning), so it compiles
    # with strict=False, and the problems are reported instead.
    for name in _files("negative"):
        for path, targeting in _targetings(load_json(*SCHEMA_TESTS, "negative", name), name):
            problems: list[RuleError] = []
            compile_rule(targeting, flag_key="f", path=path, strict=False, on_problem=problems.append)
            assert problems, name


def test_flag_schema_files_with_targeting_follow_their_verdict() -> None:
    folder = ("flagd-schemas", "json", "test", "flags")
    valid = load_json(*folder, "positive", "with-valid-targeting.json")
    for path, targeting in _targetings(valid, "valid"):
        compile_rule(_stub_refs(targeting), flag_key="f", path=path)
    invalid = load_json(*folder, "negative", "with-invalid-targeting.json")
    with pytest.raises(RuleError):
        for path, targeting in _targetings(invalid, "invalid"):
            compile_rule(_stub_refs(targeting), flag_key="f", path=path)


@pytest.mark.parametrize(
    "parts",
    [
        ("flagd-testbed", "evaluator", "flags", "testkit-flags.json"),
        ("flagd-testbed", "flags", "custom-ops.json"),
        ("flagd-testbed", "flags", "edge-case-flags.json"),
        ("flagd-testbed", "flags", "testing-flags.json"),
        ("flagd-testbed", "flags", "evaluator-refs.json"),
    ],
)
def test_testbed_flags_compile_leniently_but_for_the_deliberately_broken(parts: tuple[str, ...]) -> None:
    document = load_json(*parts)
    evaluators = document.get("$evaluators", {})
    refused = set()
    for key, flag in document["flags"].items():
        try:
            rule = resolve_refs(flag.get("targeting") or {}, evaluators)
            compile_rule(rule, flag_key=key, strict=False)
        except RuleError:
            refused.add(key)
    assert refused <= {"error-targeting-flag", "ref-to-nonexistent-evaluator-flag"}
