"""Reading flagd's shared conformance data (schema tests, testkit flags, Gherkin tables).

The data lives outside the project, in ``../shared/conformance``; tests that need it
skip with a message when it is absent. Only the small part of Gherkin that the operator
features use is understood here: scenario (outline) steps naming a String flag, context
steps, the expected value/reason, and Examples tables with their version tags.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.engine.rules import compile_rule

from tests.helpers import CONFORMANCE  # noqa: E402 (one definition of where ../shared lies)


def conformance_path(*parts: str) -> Path:
    """A path under the conformance folder, skipping the test when it is not there."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"flagd conformance data not found at {path.resolve()} (expected ../shared/conformance)")
    return path


def load_json(*parts: str) -> Any:
    return json.loads(conformance_path(*parts).read_text(encoding="utf-8"))


_FLAG_STEP = re.compile(r'a String-flag with key "([^"]*)" and a (?:fallback|default) value "([^"]*)"')


@dataclass
class Example:
    """One row of one scenario: everything needed to evaluate a flag and check it."""

    name: str
    flag_key: str
    fallback: str
    steps: list[str]
    tags: set[str]
    row: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        return re.sub(r"<([^>]+)>", lambda match: self.row.get(match.group(1), match.group(0)), text)

    @property
    def version(self) -> str | None:
        found = sorted(tag[len("@fractional-") :] for tag in self.tags if re.fullmatch(r"@fractional-v\d", tag))
        return found[-1] if found else None

    def context(self, flag_key: str) -> dict[str, Any]:
        context: dict[str, Any] = {"$flagd": {"flagKey": flag_key, "timestamp": 1_750_000_000}}
        for step in map(self.fill, self.steps):
            if match := re.search(r'outer key "([^"]*)" and inner key "([^"]*)", with value "([^"]*)"', step):
                context.setdefault(match[1], {})[match[2]] = match[3]
            elif match := re.search(r'a targeting key with value "([^"]*)"', step):
                context["targetingKey"] = match[1]
            elif match := re.search(r'a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$', step):
                context[match[1]] = typed_value(match[2], match[3])
        return context

    def expected(self) -> tuple[str | None, str | None]:
        value = reason = None
        for step in map(self.fill, self.steps):
            if match := re.search(r'the resolved details value should be "([^"]*)"', step):
                value = match[1]
            elif match := re.search(r'the reason should be "([^"]*)"', step):
                reason = match[1]
        return value, reason


def typed_value(kind: str, text: str) -> Any:
    """A Gherkin cell as the context value of the named type."""
    if kind == "Integer":
        return int(text)
    if kind == "Float":
        return float(text)
    if kind == "Boolean":
        return text == "true"
    if kind == "Object":
        return json.loads(text)
    return text  # taken literally: the suites hash "A\\u0000B" as those 8 characters


def examples(*parts: str) -> list[Example]:
    """Every String-flag example of a feature file, one per table row."""
    lines = conformance_path(*parts).read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    pending_tags: set[str] = set()
    scenario: Example | None = None
    header: list[str] | None = None
    table_tags: set[str] = set()
    for line in (raw.strip() for raw in lines):
        if line.startswith("@"):
            pending_tags |= set(line.split())
        elif line.startswith(("Scenario", "Scenario Outline")):
            scenario = Example(line.split(":", 1)[1].strip(), "", "", [], set(pending_tags))
            pending_tags, header = set(), None
            if line.startswith("Scenario:"):
                found.append(scenario)
        elif scenario is not None and (match := _FLAG_STEP.search(line)):
            scenario.flag_key, scenario.fallback = match[1], match[2]
        elif scenario is not None and line.startswith(("Given", "And", "Then", "When")):
            scenario.steps.append(line)
        elif line.startswith("Examples"):
            table_tags, pending_tags, header = pending_tags | scenario.tags, set(), None  # type: ignore[union-attr]
            name = line.split(":", 1)[1].strip()
            if re.fullmatch(r"v\d", name):
                table_tags.add(f"@fractional-{name}")
        elif line.startswith("|") and scenario is not None:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if header is None:
                header = cells
            else:
                row = Example(scenario.name, scenario.flag_key, scenario.fallback, scenario.steps,
                              set(table_tags), dict(zip(header, cells)))
                row.flag_key, row.fallback = row.fill(row.flag_key), row.fill(row.fallback)
                found.append(row)
    return [example for example in found if example.flag_key]


def resolve(flag: dict[str, Any], example: Example, fractional: str) -> tuple[Any, str]:
    """Evaluate a flag the way flagd does, enough for value and reason checks."""
    variants, default = flag["variants"], flag.get("defaultVariant")
    targeting = flag.get("targeting") or {}
    try:
        fn = compile_rule(targeting, flag_key=example.flag_key, fractional=fractional, strict=False)
        result = fn(example.context(example.flag_key))
    except Exception:  # noqa: BLE001 - a refused rule or failed evaluation is an ERROR
        return example.fallback, "ERROR"
    if result is None:
        return (variants[default] if default in variants else example.fallback), "DEFAULT"
    key = ("true" if result else "false") if type(result) is bool else str(result)
    if key not in variants:
        return example.fallback, "ERROR"
    return variants[key], "TARGETING_MATCH"
