"""flagd's ``sem_ver`` operator."""

from __future__ import annotations

from typing import Any

import pytest

from agent.engine.rules import RuleError, compile_rule
from agent.engine.rules.semver import parse_version


def sem_ver(left: Any, op: str, right: Any, *, strict: bool = False) -> Any:
    rule = {"sem_ver": [{"var": "v"}, op, right]}
    return compile_rule(rule, flag_key="f", strict=strict)({"v": left})


@pytest.mark.parametrize(
    ("left", "op", "right", "expected"),
    [
        ("2.0.0", "=", "2.0.0", True),
        ("2.0.0", "!=", "2.0.1", True),
        ("2.1.0", ">", "2.0.0", True),
        ("1.9.0", "<", "2.0.0", True),
        ("2.0.0", ">=", "2.0.0", True),
        ("2.0.0", "<=", "1.99.99", False),
        ("2.0.0-alpha", "<", "2.0.0", True),
        ("1.0.0-alpha", "<", "1.0.0-alpha.1", True),
        ("1.0.0-alpha.1", "<", "1.0.0-alpha.beta", True),
        ("1.0.0-alpha.beta", "<", "1.0.0-beta", True),
        ("1.0.0-beta.2", "<", "1.0.0-beta.11", True),
        ("1.0.0-beta.11", "<", "1.0.0-rc.1", True),
        ("1.0.0-rc.1", "<", "1.0.0", True),
        ("1.0.0+build.1", "=", "1.0.0+other", True),
        ("3.0.1", "~", "3.0.0", True),
        ("3.1.0", "~", "3.0.0", False),
        ("3.1.0", "^", "3.0.0", True),
        ("4.0.0", "^", "3.0.0", False),
        ("v1.0.0", "=", "1.0.0", True),
        ("V1.0.0", "=", "1.0.0", True),
        ("1", "^", "1.5.0", True),
        ("1.2", "=", "1.2.0", True),
        (1, "=", "1.0.0", True),
        (1.2, ">", "1.1", True),
        (2, ">", "1.1", True),
    ],
)
def test_sem_ver_compares_by_semver_precedence(left: Any, op: str, right: Any, expected: bool) -> None:
    assert sem_ver(left, op, right) is expected


@pytest.mark.parametrize("version", ["not-a-version", "2.0.0.0", "01.0.0", "", None, True, ["1.0.0"], "1.0.0-01"])
def test_sem_ver_answers_null_for_a_context_value_that_is_not_a_version(version: Any) -> None:
    assert sem_ver(version, "=", "1.0.0") is None


def test_sem_ver_checks_literal_operator_and_versions_at_compile_time() -> None:
    with pytest.raises(RuleError, match="not a sem_ver operator") as caught:
        compile_rule({"sem_ver": [{"var": "v"}, "===", "1.0.0"]}, flag_key="f")
    assert caught.value.path == "$.targeting.sem_ver[1]"
    with pytest.raises(RuleError, match="not a semantic version"):
        compile_rule({"sem_ver": ["1.0", "=", {"var": "v"}]}, flag_key="f")
    with pytest.raises(RuleError, match="3 items"):
        compile_rule({"sem_ver": [{"var": "v"}, "="]}, flag_key="f")
    with pytest.raises(RuleError, match="version string or a"):
        compile_rule({"sem_ver": [{"cat": ["1.", "0.0"]}, "=", "1.0.0"]}, flag_key="f")


def test_lenient_sem_ver_with_schema_problems_answers_what_flagd_answers() -> None:
    assert sem_ver("1.0.0", "===", "1.0.0") is None
    assert sem_ver("1.0.0", "=", "v1") is True
    rule = {"sem_ver": [{"var": "v"}, "="]}
    assert compile_rule(rule, flag_key="f", strict=False)({"v": "1.0.0"}) is None


def test_parse_version_pads_partial_versions_and_drops_build_metadata() -> None:
    assert parse_version("1") == parse_version("1.0.0") == parse_version("v1.0.0+b")
    assert parse_version("1.2-rc.1") == parse_version("1.2.0-rc.1")
    assert parse_version("1.2.3-") is None
