"""``resolve_refs``: replace ``{"$ref": "name"}`` with the shared rule under ``$evaluators``.

flagd lets a flag file define rules once (``"$evaluators": {"name": rule}``) and refer
to them from any targeting. Resolving them before compiling keeps the compiler unaware
of references; an evaluator may itself refer to others, so the expansion is recursive
and a cycle (``a`` -> ``b`` -> ``a``) is refused rather than expanded forever.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import RuleError, Where


def resolve_refs(rule: Any, evaluators: Mapping[str, Any], path: Where = "$.targeting") -> Any:
    """A copy of ``rule`` with every ``{"$ref": name}`` replaced by ``evaluators[name]``.

    Raises:
        RuleError: a reference names no evaluator, is not a string, or is part of a cycle.
    """
    try:
        return _resolve(rule, evaluators, path, ())
    except RecursionError:
        raise RuleError(path, "the rule is nested too deeply to resolve its references") from None


def _resolve(rule: Any, evaluators: Mapping[str, Any], path: Where, chain: tuple[str, ...]) -> Any:
    kind = type(rule)
    if kind is list:
        return [_resolve(item, evaluators, (path, index), chain) for index, item in enumerate(rule)]
    if kind is not dict:
        return rule
    if "$ref" not in rule:
        return {key: _resolve(value, evaluators, (path, key), chain) for key, value in rule.items()}
    ref_path = (path, "$ref")
    name = rule["$ref"]
    if len(rule) != 1:
        raise RuleError(path, "a {\"$ref\": ...} object must have no other keys")
    if type(name) is not str:
        raise RuleError(ref_path, f"a reference must name an evaluator as a string, got {name!r}")
    if name not in evaluators:
        known = ", ".join(sorted(evaluators)) or "none are defined"
        raise RuleError(ref_path, f"no evaluator named {name!r} under \"$evaluators\" (defined: {known})")
    if name in chain:
        cycle = " -> ".join((*chain, name))
        raise RuleError(ref_path, f"evaluator references form a cycle: {cycle}")
    evaluator_path = (("$", "$evaluators"), name)
    return _resolve(evaluators[name], evaluators, evaluator_path, (*chain, name))
