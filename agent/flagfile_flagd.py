"""Flags in flagd's format: validation beyond the schema's types, ``$ref``, compiled targeting.

One :class:`FlagdCompiler` serves one document: it knows the document's ``$evaluators``, its
metadata, the bucketing version and whether schema problems in rules are refused (``reject``)
or served the way flagd serves them (``isolate``, where they are still reported).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .converter import FlagdFlagSpec, child_path, problem_at, structure, variant_kind
from .evaluation import static_table, targeting_resolver
from .model import CompiledFlag, FrozenDict, Problem, fingerprint
from .rules import CompiledRule, RuleError, compile_targeting, resolve_refs


class FlagdCompiler:
    """Compiles the flagd flags of one document."""

    def __init__(self, source: str, *, fractional: str, strict: bool, evaluators: Mapping[str, Any],
                 metadata: Mapping[str, Any], report: Callable[[Problem], None]) -> None:
        self.source = source
        self.fractional = fractional
        self.strict = strict
        self.evaluators = evaluators
        self.metadata = metadata
        self.report = report  # where problems that do not break a flag go

    def check_evaluators(self) -> None:
        """Compile each evaluator alone, so one that no flag uses is still checked."""
        for name, rule in self.evaluators.items():
            path = child_path("$.$evaluators", name)
            try:
                self._compile_rule(resolve_refs(rule, self.evaluators, path), "", path, None)
            except RuleError as exc:
                self.report(Problem(self.source, exc.path, exc.message))

    def compile_flag(self, key: str, raw: dict, path: str, found: list[Problem], *,
                     refs: bool = True) -> CompiledFlag | None:
        """The compiled flag, or None with what breaks it added to ``found``.

        ``refs=False`` says the flag's JSON holds no ``"$ref"`` key (the caller saw its text),
        so its targeting is compiled as it is, not copied by ``resolve_refs`` first.
        """
        spec, problems = structure(raw, FlagdFlagSpec, source=self.source, path=path, flag=key)
        found.extend(problems)
        if spec is None:
            return None
        variants = spec.variants
        default = spec.default_variant
        if default is not None and default not in variants:
            found.append(problem_at(self.source, key, path, ("defaultVariant",),
                                    f"must name one of the variants ({', '.join(variants)}) or be null, got {default!r}"))
        rule, resolved = self._compile_targeting(key, spec.targeting, path, found, refs)
        if found:
            return None
        metadata = FrozenDict({**self.metadata, **spec.metadata}) if spec.metadata else self.metadata
        effective = {k: v for k, v in raw.items() if k != "key"}
        effective["metadata"] = metadata
        if rule is not None:
            effective["targeting"] = resolved
            effective["$fractional"] = self.fractional
        enabled = spec.state == "ENABLED"
        if rule is None or not enabled:
            static, resolver = static_table(key, variants, default, metadata, enabled=enabled), None
        else:
            static, resolver = None, targeting_resolver(key, rule.evaluate, variants, default, metadata,
                                                        reads_clock=rule.reads_clock)
        return CompiledFlag(
            key=key, value_type=_value_type(variants), variants=variants, default_variant=default,
            metadata=metadata, enabled=enabled, source=self.source, format="flagd",
            fingerprint=fingerprint(effective), static=static, resolver=resolver,
        )

    def _compile_targeting(self, key: str, targeting: dict | None, path: str, found: list[Problem],
                           refs: bool) -> tuple[CompiledRule | None, Any]:
        if not targeting:  # absent, null or {}: no targeting
            return None, None
        tpath = child_path(path, "targeting")
        try:
            resolved = resolve_refs(targeting, self.evaluators, tpath) if refs else targeting
            return self._compile_rule(resolved, key, tpath, key), resolved
        except RuleError as exc:
            found.append(Problem(self.source, exc.path, exc.message, key))
        except Exception as exc:  # a bug in the rule compiler must break this flag, not the file
            found.append(Problem(self.source, tpath, f"could not compile targeting ({type(exc).__name__}: {exc})", key))
        return None, None

    def _compile_rule(self, rule: Any, key: str, path: str, flag: str | None) -> CompiledRule:
        """Strict when rejecting. When isolating, a rule flagd's schema refuses but its evaluators
        serve (a sem_ver with two operands...) is served the same way, and still reported."""
        def tolerated(exc: RuleError) -> None:
            self.report(Problem(self.source, exc.path, f"{exc.message} (served as flagd does)", flag))

        return compile_targeting(rule, flag_key=key, fractional=self.fractional, path=path,
                            strict=self.strict, on_problem=None if self.strict else tolerated)


def _value_type(variants: Mapping[str, Any]) -> str:
    """The flag's type: its variants' one kind (validation let through no other mix than
    integers with floats, which make a float flag)."""
    kinds = {type(value) for value in variants.values()}
    if len(kinds) == 1:
        return variant_kind(next(iter(variants.values())))  # type: ignore[return-value]
    return "float"
