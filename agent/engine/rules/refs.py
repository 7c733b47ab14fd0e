"""``resolve_refs``: replace ``{"$ref": "name"}`` with the shared rule under ``$evaluators``.

flagd lets a flag file define rules once (``"$evaluators": {"name": rule}``) and refer
to them from any targeting. Resolving them before compiling keeps the compiler unaware
of references; an evaluator may itself refer to others, so the expansion is recursive
and a cycle (``a`` -> ``b`` -> ``a``) is refused rather than expanded forever.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .errors import RuleError, Where


def resolve_refs(
    rule: Any, evaluators: Mapping[str, Any], path: Where = "$.targeting",
    on_error: Callable[[RuleError], None] | None = None,
) -> Any:
    """A copy of ``rule`` with every ``{"$ref": name}`` replaced by ``evaluators[name]``.

    Every reference is followed, so all the broken ones are found in one call.

    Args:
        on_error: when given, each broken reference is reported to it and replaced by null,
            and the copy is returned (for a caller that goes on to check the rest of the rule).

    Raises:
        RuleError: (without ``on_error``) some reference names no evaluator, is not a string,
            or is part of a cycle; ``errors`` lists each.
    """
    errors: list[RuleError] = []
    try:
        resolved = _resolve(rule, evaluators, path, (), errors.append)
    except RecursionError:
        raise RuleError(path, "the rule is nested too deeply to resolve its references") from None
    if errors and on_error is None:
        raise RuleError.several(errors)
    for error in errors:
        on_error(error)  # type: ignore[misc]
    return resolved


def _resolve(rule: Any, evaluators: Mapping[str, Any], path: Where, chain: tuple[str, ...],
             broken: Callable[[RuleError], None]) -> Any:
    kind = type(rule)
    if kind is list:
        return [_resolve(item, evaluators, (path, index), chain, broken) for index, item in enumerate(rule)]
    if kind is not dict:
        return rule
    if "$ref" not in rule:
        return {key: _resolve(value, evaluators, (path, key), chain, broken) for key, value in rule.items()}
    ref_path = (path, "$ref")
    name = rule["$ref"]
    if len(rule) != 1:
        broken(RuleError(path, "a {\"$ref\": ...} object must have no other keys"))
    elif type(name) is not str:
        broken(RuleError(ref_path, f"a reference must name an evaluator as a string, got {name!r}"))
    elif name not in evaluators:
        known = ", ".join(sorted(evaluators)) or "none are defined"
        broken(RuleError(ref_path, f"no evaluator named {name!r} under \"$evaluators\" (defined: {known})"))
    elif name in chain:
        broken(RuleError(ref_path, f"evaluator references form a cycle: {' -> '.join((*chain, name))}"))
    else:
        evaluator_path = (("$", "$evaluators"), name)
        return _resolve(evaluators[name], evaluators, evaluator_path, (*chain, name), broken)
    return None
