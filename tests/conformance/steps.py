"""Step implementations for flagd's testbed features, run against flagsock's engine.

A scenario runs in a :class:`World`: its steps choose flags, a context and a requested type, one
step evaluates through :func:`agent.engine.evaluate.evaluate`, and the ``Then`` steps compare. Flags
are loaded with :func:`agent.engine.formats.document.parse_flag_document` under ``invalid_flags="isolate"``
(the suites hold deliberately broken flags) and the bucketing version the scenario's tags name.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.engine.evaluate import evaluate
from agent.engine.formats.document import parse_flag_document
from agent.engine.model import Resolution
from agent.engine.rules.fractional import VERSIONS

from .gherkin import Scenario, Step

_TYPES: dict[str, Callable[[str], Any]] = {
    "Boolean": lambda s: {"true": True, "false": False}[s],
    "Integer": int,
    "Float": float,
    "String": str,
    "Object": json.loads,
}
_OPTIONS_WE_HONOUR = {"cache", "selector"}  # cache: we never cache; selector: which flag files


def typed(type_name: str, text: str) -> Any:
    return _TYPES[type_name](text)


def combined_document(files: tuple[Path, ...]) -> bytes:
    """The flags of ``files`` as one document, like the testbed image's ``allFlags.json``.

    The image aggregates the files into one, so a flag may ``$ref`` an evaluator defined in
    another file (``zero-flags.json`` uses ``evaluator-refs.json``'s ``is_ballmer``): ``flags``,
    ``$evaluators`` and ``metadata`` are merged member by member, later files winning.
    """
    combined: dict[str, dict[str, Any]] = {}
    for path in files:
        for member, value in json.loads(path.read_text(encoding="utf-8")).items():
            if isinstance(value, dict):
                combined.setdefault(member, {}).update(value)
    return json.dumps(combined).encode()


@functools.lru_cache(maxsize=None)
def load_flags(files: tuple[Path, ...], fractional: str) -> Mapping[str, Any]:
    name = files[0].name if len(files) == 1 else "allFlags.json"
    parsed = parse_flag_document(combined_document(files), name, fractional=fractional, invalid_flags="isolate")
    return parsed.flags


@functools.lru_cache(maxsize=None)
def load_flag_set(base: tuple[Path, ...], extra: Path, flag_set: str, fractional: str) -> Mapping[str, Any]:
    """The flags of set ``flag_set`` when ``base`` (combined) and ``extra`` are two sources, merged
    by the store's own code: what an agent serving both answers to ``flagSetId=ID``."""
    from agent.sources.base import content_hash, source_state
    from agent.store.snapshot import merge_sources

    states = []
    for name, data in (("allFlags.json", combined_document(base)), (extra.name, extra.read_bytes())):
        parsed = parse_flag_document(data, name, fractional=fractional, invalid_flags="isolate")
        states.append(source_state(name, content_hash(data), parsed))
    _, sets, _ = merge_sources(states)
    return sets.get(flag_set, {})


def engine_backend(world: "World") -> Resolution:
    """Evaluate in-process, through :func:`agent.engine.evaluate.evaluate`."""
    where = world.suite.where(world.options.get("selector"))
    if where.flag_set is not None:
        flags = load_flag_set(where.files, where.extra, where.flag_set, world.fractional)
    else:
        flags = load_flags(where.files, world.fractional)
    return evaluate(flags, world.key, world.context or None,
                    expected_type=world.flag_type.lower(), default=world.default)


@dataclass(frozen=True)
class Where:
    """Where a scenario's flags come from: ``files`` combined into one source; with a flag set,
    ``extra`` is a second source and requests carry ``selector: flagSetId=<flag_set>``."""

    files: tuple[Path, ...]
    extra: Path | None = None
    flag_set: str | None = None


@dataclass
class Suite:
    """Where a group of features takes its flags from."""

    name: str
    default_files: tuple[Path, ...]
    selectable: Path | None = None  # the directory ``rawflags/NAME`` selectors point into

    def files(self, selector: str | None) -> tuple[Path, ...]:
        if selector is None or selector == "flags/allFlags.json":
            return self.default_files
        if self.selectable is not None and selector.startswith("rawflags/"):
            return (self.selectable / selector.removeprefix("rawflags/"),)
        raise AssertionError(f"unknown selector {selector!r}")

    def where(self, selector: str | None) -> Where:
        """A ``rawflags/FILE`` selector whose file names a flag set (``metadata.flagSetId``) is
        run as flagd runs it today: every file served, the request selecting that set. A file
        without one is served alone, as flagd's older per-source selector did."""
        files = self.files(selector)
        if len(files) == 1 and files != self.default_files:
            flag_set = json.loads(files[0].read_text(encoding="utf-8")).get("metadata", {}).get("flagSetId")
            if isinstance(flag_set, str):
                return Where(self.default_files, files[0], flag_set)
        return Where(files)


@dataclass
class World:
    suite: Suite
    fractional: str
    options: dict[str, str] = field(default_factory=dict)
    flag_type: str = ""
    key: str = ""
    default: Any = None
    context: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    #: How "the flag was evaluated": in-process, or through a running agent's socket.
    backend: Callable[["World"], Any] = engine_backend

    @property
    def resolved(self) -> Resolution:
        assert self.result is not None, "the flag was not evaluated"
        return self.result


_STEPS: list[tuple[re.Pattern[str], Callable[..., None]]] = []


def step(pattern: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        _STEPS.append((re.compile(pattern + r"\Z"), fn))
        return fn
    return register


@step(r"an evaluator|a stable flagd provider|a metadata flagd provider")
def _nothing(world: World, step: Step) -> None:
    """The engine needs no start-up: flags are loaded when the flag is chosen."""


@step(r'an option "(?P<name>[^"]*)" of type "(?P<type>[^"]*)" with value "(?P<value>[^"]*)"')
def _option(world: World, step: Step, name: str, type: str, value: str) -> None:
    world.options[name] = value


@step(r'a (?P<type>\w+)-flag with key "(?P<key>[^"]*)" and a (?:fallback|default) value "(?P<default>.*)"')
def _flag(world: World, step: Step, type: str, key: str, default: str) -> None:
    world.flag_type, world.key, world.default = type, key, typed(type, default)


@step(r'a context containing a targeting key with value "(?P<value>.*)"')
def _targeting_key(world: World, step: Step, value: str) -> None:
    world.context["targetingKey"] = value


@step(r'a context containing a key "(?P<key>[^"]*)", with type "(?P<type>\w+)" and with value "(?P<value>.*)"')
def _context_key(world: World, step: Step, key: str, type: str, value: str) -> None:
    world.context[key] = typed(type, value)


@step(r'a context containing a nested property with outer key "(?P<outer>[^"]*)" and inner key "(?P<inner>[^"]*)", with value "(?P<value>.*)"')
def _nested(world: World, step: Step, outer: str, inner: str, value: str) -> None:
    world.context.setdefault(outer, {})[inner] = value


@step(r"the flag was evaluated with details")
def _evaluate(world: World, step: Step) -> None:
    world.result = world.backend(world)


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, (dict, list)):
        return actual == expected
    return type(actual) is type(expected) and actual == expected


@step(r'the resolved details value should be "(?P<value>.*)"')
def _value(world: World, step: Step, value: str) -> None:
    expected = typed(world.flag_type, value)
    res = world.resolved
    assert _same(res.value, expected), f"value {res.value!r}, expected {expected!r} ({res})"


@step(r'the reason should be "(?P<reason>[^"]*)"')
def _reason(world: World, step: Step, reason: str) -> None:
    assert world.resolved.reason == reason, f"reason {world.resolved.reason}, expected {reason} ({world.resolved})"


@step(r'the error-code should be "(?P<code>[^"]*)"')
def _error_code(world: World, step: Step, code: str) -> None:
    expected = code or None
    assert world.resolved.error_code == expected, f"error code {world.resolved.error_code}, expected {expected} ({world.resolved})"


@step(r"the resolved metadata should contain")
def _metadata(world: World, step: Step) -> None:
    header, *rows = step.table
    assert header == ("key", "metadata_type", "value"), header
    metadata = world.resolved.metadata
    for key, type_name, text in rows:
        expected = typed(type_name, text)
        assert key in metadata and _same(metadata[key], expected), f"metadata[{key!r}] = {metadata.get(key)!r}, expected {expected!r}"


@step(r"the resolved metadata is empty")
def _no_metadata(world: World, step: Step) -> None:
    assert not world.resolved.metadata, f"metadata {dict(world.resolved.metadata)} is not empty"


def skip_reason(scenario: Scenario) -> str | None:
    """Why a scenario does not apply to flagsock's engine, or None when it must run."""
    if "@deprecated" in scenario.tags:
        return "@deprecated (marked by flagd): the pre-flagd#1965 no-default answer, superseded by @no-default-variant"
    for s in scenario.steps:
        m = re.match(r'an option "([^"]*)"', s.text)
        if m and m.group(1) not in _OPTIONS_WE_HONOUR:
            return f"provider option {m.group(1)!r}: gRPC provider configuration"
    return None


def bucketing(scenario: Scenario) -> str:
    """The ``--fractional`` a scenario's tags name (``@fractional-v1``...); untagged ones hold under v2."""
    for version in VERSIONS:
        if f"@fractional-{version}" in scenario.tags:
            return version
    return "v2"


def run(scenario: Scenario, suite: Suite, backend: Callable[[World], Any] = engine_backend) -> None:
    world = World(suite, bucketing(scenario), backend=backend)
    for s in scenario.steps:
        for pattern, fn in _STEPS:
            m = pattern.match(s.text)
            if m:
                fn(world, s, **m.groupdict())
                break
        else:
            raise AssertionError(f"no step implementation for line {s.line}: {s.keyword} {s.text}")
