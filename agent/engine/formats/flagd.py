"""Flags in flagd's format: validation beyond the schema's types, ``$ref``, compiled targeting.

One :class:`FlagdCompiler` serves one document: it knows the document's ``$evaluators`` (each
compiled once, and shared by the flags that refer to it), its metadata, the bucketing version,
the limits a rule must keep within, and whether schema problems in rules are refused
(``reject``) or served the way flagd serves them (``isolate``, where they are still reported).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.engine.model import (
    CompiledFlag,
    FrozenDict,
    Problem,
    canonical_json,
    definition_text,
    fingerprint,
)
from agent.engine.limits import DEFAULT_LIMITS, Limits
from agent.engine.rules import CompiledRule, RuleError, compile_targeting
from agent.engine.rules.errors import Where, render
from agent.engine.rules.refs import SharedEvaluators
from agent.engine.schema import (
    FlagdFlagSpec,
    child_path,
    problem_at,
    structure,
    variant_kind,
)
from agent.engine.tables import static_table, targeting_resolver


class FlagdCompiler:
    """Compiles the flagd flags of one document."""

    def __init__(self, source: str, *, fractional: str, strict: bool, evaluators: Mapping[str, Any],
                 metadata: Mapping[str, Any], report: Callable[[Problem], None],
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.source = source
        self.fractional = fractional
        self.strict = strict
        self.evaluators = evaluators
        self.limits = limits
        self.shared = SharedEvaluators(evaluators, fractional=fractional, strict=strict,
                                       max_nodes=limits.max_rule_nodes, max_depth=limits.max_depth)
        self.metadata = metadata
        self.metadata_text = canonical_json(metadata)  # part of every flag's fingerprint
        self.report = report  # where problems that do not break a flag go

    def check_evaluators(self) -> None:
        """Compile each evaluator, so one that no flag uses is still checked."""
        for name in self.evaluators:
            path = child_path("$.$evaluators", name)
            try:
                shared = self.shared.use(name, path, "")
            except RuleError as exc:
                for error in exc.errors:
                    self.report(Problem(self.source, error.path, error.message))
                continue
            for exc in shared.tolerated:
                self.report(Problem(self.source, exc.path, f"{exc.message} (served as flagd does)"))

    def compile_flag(self, key: str, raw: dict, path: Where, found: list[Problem], text: bytes) -> CompiledFlag | None:
        """The compiled flag, or None with what breaks it added to ``found``.

        ``text`` is the flag's canonical JSON: its fingerprint is made of it, the file's
        metadata and, for a targeted flag, the bucketing version and the digests of the
        evaluators its rule refers to (so a changed evaluator changes the flags using it).
        """
        spec, problems = structure(raw, FlagdFlagSpec, source=self.source, path=path, flag=key)
        found.extend(problems)
        # Read from the raw flag, so that these are checked even when a field above is broken.
        names = raw.get("variants")
        default = raw.get("defaultVariant")
        if type(names) is dict and names and type(default) is str and default not in names:
            found.append(problem_at(self.source, key, path, ("defaultVariant",),
                                    f"must name one of the variants ({', '.join(names)}) or be null, got {default!r}"))
        targeting = raw.get("targeting")
        rule = self._compile_targeting(key, targeting if type(targeting) is dict else None, path, found)
        if found or spec is None:
            return None
        variants = spec.variants
        default = spec.default_variant
        metadata = FrozenDict({**self.metadata, **spec.metadata}) if spec.metadata else self.metadata
        enabled = spec.state == "ENABLED"
        if rule is None:
            digest = fingerprint(text, self.metadata_text)
        else:
            digest = fingerprint(text, self.metadata_text, self.fractional.encode(), b"".join(rule.ref_digests))
        if rule is None or not enabled:
            static, resolver = static_table(key, variants, default, metadata, enabled=enabled), None
        else:
            static, resolver = None, targeting_resolver(key, rule.evaluate, variants, default, metadata,
                                                        reads_clock=rule.reads_clock)
        return CompiledFlag(
            key=key, value_type=_value_type(variants), variants=variants, default_variant=default,
            metadata=metadata, enabled=enabled, source=self.source, format="flagd",
            fingerprint=digest, static=static, resolver=resolver, definition=definition_text(text),
            # For explain: the definition's own targeting, and the document's evaluators (one
            # object, shared) when it refers to them; never a copy expanded per flag.
            rule=None if rule is None else (b"", self.fractional, self.evaluators if rule.ref_digests else None),
            reads_clock=resolver is not None and rule.reads_clock,
        )

    def _compile_targeting(self, key: str, targeting: dict | None, path: Where,
                           found: list[Problem]) -> CompiledRule | None:
        if not targeting:  # absent, null or {}: no targeting
            return None
        tpath = (path, "targeting")
        try:
            return self._compile_rule(targeting, key, tpath, key)
        except RuleError as exc:  # every problem of the rule, each with its path
            found.extend(Problem(self.source, error.path, error.message, key) for error in exc.errors)
        except Exception as exc:  # a bug in the rule compiler must break this flag, not the file
            found.append(Problem(self.source, render(tpath), f"could not compile targeting ({type(exc).__name__}: {exc})", key))
        return None

    def _compile_rule(self, rule: Any, key: str, path: Where, flag: str | None) -> CompiledRule:
        """Strict when rejecting. When isolating, a rule flagd's schema refuses but its evaluators
        serve (a sem_ver with two operands...) is served the same way, and still reported."""
        def tolerated(exc: RuleError) -> None:
            self.report(Problem(self.source, exc.path, f"{exc.message} (served as flagd does)", flag))

        return compile_targeting(rule, flag_key=key, fractional=self.fractional, path=path,
                                 strict=self.strict, on_problem=None if self.strict else tolerated,
                                 evaluators=self.shared, max_nodes=self.limits.max_rule_nodes,
                                 max_depth=self.limits.max_depth)


def _value_type(variants: Mapping[str, Any]) -> str:
    """The flag's type: its variants' one kind, or "float" for integers mixed with floats (the
    only mix validation lets through)."""
    values = iter(variants.values())
    kind = variant_kind(next(values))
    if kind == "integer" and any(type(value) is float for value in values):
        return "float"
    return kind  # type: ignore[return-value]
