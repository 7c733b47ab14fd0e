"""The strict cattrs converter for flag files, and the raw shapes it builds.

cattrs' defaults are lenient in ways a flag file must not be: ``"enabled": "yes"`` would become
True and ``true`` would pass as an integer. Every primitive here is checked by type, the value
rules of the schema (a state name, a percentage, uniform variant types...) live in structure
hooks, and errors are turned into :class:`~agent.engine.model.Problem` objects that keep the JSON path
of the offending value and the rule it breaks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, NewType, Optional

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from agent.engine.model import EMPTY, FrozenDict, Problem, deep_freeze
from agent.engine.rules.errors import Where, render
from protocol.messages import json_type

State = NewType("State", str)
Variants = NewType("Variants", dict)
Metadata = NewType("Metadata", dict)
SetMetadata = NewType("SetMetadata", dict)
Rule = NewType("Rule", dict)
Evaluators = NewType("Evaluators", dict)
Percentage = NewType("Percentage", float)
UserList = NewType("UserList", tuple)


class Broken(ValueError):
    """A value breaks a rule; ``where`` leads from the checked value to the broken spot."""

    def __init__(self, message: str, where: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def _json(name: str) -> dict[str, str]:
    return {"json": name}


# The specs are read once, while their flag compiles, and then dropped: plain (mutable) attrs
# classes, whose __init__ costs half a frozen one's, times every flag of a large file.

@attrs.define
class FlagdFlagSpec:
    """A flag in flagd's format, as written. Unknown keys are allowed (the schema allows them)."""

    state: State
    variants: Variants
    default_variant: str | None = attrs.field(default=None, metadata=_json("defaultVariant"))
    targeting: Rule | None = None
    metadata: Metadata = EMPTY


@attrs.define
class SimpleFlagSpec:
    """A flag in the simple format: a boolean with an allow list and a percentage rollout."""

    enabled: bool
    rollout_percentage: Percentage | None = None
    rollout: Percentage | None = None
    allowed_users: UserList | None = None
    name: str | None = None
    description: str | None = None


@attrs.frozen
class FileSpec:
    """The top level of a flagd-format document, apart from ``flags``."""

    metadata: SetMetadata = EMPTY
    evaluators: Evaluators = attrs.field(default=EMPTY, metadata=_json("$evaluators"))


SIMPLE_KEYS = tuple(a.name for a in attrs.fields(SimpleFlagSpec))


def _got(value: Any) -> str:
    """A short rendering of a bad value: the value itself when small, else its type."""
    if value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40):
        return json.dumps(value, ensure_ascii=False)
    return json_type(value)


# --- strict primitives ------------------------------------------------------------------------

def _strict(accepted: tuple[type, ...], expected: str) -> Any:
    """A hook taking exactly these JSON types: no "yes" for true, no true for 1."""
    def hook(value: Any, _: Any) -> Any:
        if type(value) not in accepted:
            raise Broken(f"must be {expected}, got {_got(value)}")
        return value
    return hook


# --- value rules ------------------------------------------------------------------------------

def _state(value: Any, _: Any) -> str:
    if value not in ("ENABLED", "DISABLED") or type(value) is not str:
        raise Broken(f'must be "ENABLED" or "DISABLED", got {_got(value)}')
    return value


def variant_kind(value: Any) -> str | None:
    """The flag value type a variant value belongs to, or None when it cannot be a variant."""
    t = type(value)
    if t is bool:
        return "boolean"
    if t is str:
        return "string"
    if t is int:
        return "integer"
    if t is float:
        return "float"
    if isinstance(value, dict):
        return "object"
    return None


def _object(value: Any, what: str) -> dict:
    if type(value) is not dict:
        raise Broken(f"{what} must be an object, got {json_type(value)}")
    return value


def _variants(value: Any, _: Any) -> Mapping[str, Any]:
    """The variants, checked and frozen (they are handed out to every request).

    Every broken variant is reported; the type all must share is the first variant's.
    """
    _object(value, "variants")
    if not value:
        raise Broken("must name at least one variant")
    found: list[Broken] = []
    first_key: str | None = None
    first_kind: str | None = None
    nested = False
    for name, val in value.items():
        if not name:
            found.append(Broken("a variant name must not be empty", ("",)))
        kind = variant_kind(val)
        if kind is None:
            found.append(Broken(f"a variant value must be a boolean, string, number or object, got {json_type(val)}",
                                (name,)))
        elif first_kind is None:
            first_key, first_kind = name, kind
        elif kind != first_kind and {kind, first_kind} != {"integer", "float"}:
            found.append(Broken(
                f"variant values must all be of one type: {first_key!r} is {_kind_noun(first_kind)}, "
                f"{name!r} is {_kind_noun(kind)}",
                (name,),
            ))
        nested = nested or kind == "object"
    if found:
        _raise_all(found)
    return deep_freeze(value) if nested else FrozenDict(value)


def _kind_noun(kind: str) -> str:
    return {"boolean": "a boolean", "string": "a string", "integer": "a number",
            "float": "a number", "object": "an object"}[kind]


def _raise_all(found: list[Broken]) -> None:
    if len(found) == 1:
        raise found[0]
    if found:
        raise ExceptionGroup("several values break rules", found)


def _metadata_problems(value: Any) -> list[Broken]:
    _object(value, "metadata")
    return [
        Broken(f"a metadata value must be a string, number or boolean, got {json_type(val)}", (key,))
        for key, val in value.items() if type(val) not in (str, int, float, bool)
    ]


def _metadata(value: Any, _: Any) -> Mapping[str, Any]:
    _raise_all(_metadata_problems(value))
    return FrozenDict(value)


def _set_metadata(value: Any, _: Any) -> Mapping[str, Any]:
    found = _metadata_problems(value)
    found += [Broken(f"must be a string, got {_got(value[key])}", (key,))
              for key in ("flagSetId", "version") if key in value and type(value[key]) in (int, float, bool)]
    _raise_all(found)
    return FrozenDict(value)


def _rule(value: Any, _: Any) -> dict:
    return _object(value, "a targeting rule")


def _evaluators(value: Any, _: Any) -> Mapping[str, Any]:
    _raise_all(evaluator_problems(_object(value, "$evaluators")))
    return value


def evaluator_problems(evaluators: dict) -> list[Broken]:
    """What is wrong with each entry of ``$evaluators`` (the rules inside are compiled later)."""
    found = [Broken("an evaluator name must not be empty", ("",)) for name in evaluators if not name]
    found += [Broken(f"an evaluator must be a targeting rule (an object), got {json_type(rule)}", (name,))
              for name, rule in evaluators.items() if type(rule) is not dict]
    return found


def _percentage(value: Any, _: Any) -> float:
    if type(value) not in (int, float) or not 0 <= value <= 100:
        raise Broken(f"must be a number from 0 to 100, got {_got(value)}")
    return value


def _users(value: Any, _: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise Broken(f"must be an array of user ids (strings), got {json_type(value)}")
    _raise_all([Broken(f"a user id must be a string, got {_got(user)}", (i,))
                for i, user in enumerate(value) if type(user) is not str])
    return tuple(value)


def _or_null(hook: Any) -> Any:
    def structure_or_null(value: Any, typ: Any) -> Any:
        return None if value is None else hook(value, typ)
    return structure_or_null


def make_converter() -> cattrs.Converter:
    """The one converter of flag files: strict types, no unknown keys but where flagd allows."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for typ, hook in ((str, _strict((str,), "a string")), (bool, _strict((bool,), "true or false")),
                      (int, _strict((int,), "an integer")), (float, _strict((int, float), "a number")), (State, _state),
                      (Variants, _variants), (Metadata, _metadata), (SetMetadata, _set_metadata),
                      (Rule, _rule), (Evaluators, _evaluators), (Percentage, _percentage),
                      (UserList, _users)):
        conv.register_structure_hook(typ, hook)
        # ``T | None`` straight to T's hook: cattrs' generic Optional dispatch costs a call more
        # per field, and a large file has tens of thousands of them.
        conv.register_structure_hook(Optional[typ], _or_null(hook))
    for cls, forbid in ((FlagdFlagSpec, False), (SimpleFlagSpec, True), (FileSpec, False)):
        renames = {a.name: cattrs.override(rename=a.metadata["json"]) for a in attrs.fields(cls) if "json" in a.metadata}
        conv.register_structure_hook(
            cls, cattrs.gen.make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=forbid, **renames)
        )
    return conv


CONVERTER = make_converter()

def child_path(path: str, key: str | int) -> str:
    """``$.flags`` + ``dark_mode`` -> ``$.flags.dark_mode``; indexes and odd keys in brackets
    (the notation of rule paths, so one file's problems read alike)."""
    return render((path, key))


def _json_name(cls: type, attr: str) -> str:
    for a in attrs.fields(cls):
        if a.name == attr:
            return a.metadata.get("json", attr)
    return attr


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Broken):
        return exc.message
    if isinstance(exc, KeyError):
        return "is required"
    return f"is invalid ({exc})"


def _walk(exc: BaseException, path: str, cls: type | None) -> Iterator[tuple[str, str]]:
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            sub_path = child_path(path, _json_name(exc.cl, note.name))
            yield from _walk(sub, sub_path, exc.cl)
        for sub in without:
            yield from _walk(sub, path, exc.cl)
    elif isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            yield from _walk(sub, child_path(path, note.index), None)
        for sub in without:
            yield from _walk(sub, path, None)
    elif isinstance(exc, ForbiddenExtraKeysError):
        allowed = ", ".join(SIMPLE_KEYS) if exc.cl is SimpleFlagSpec else ""
        for key in sorted(exc.extra_fields):
            yield child_path(path, key), f"unknown key; allowed keys are {allowed}" if allowed else "unknown key"
    elif isinstance(exc, ExceptionGroup):
        for sub in exc.exceptions:
            yield from _walk(sub, path, cls)
    elif isinstance(exc, Broken):
        yield problem_at("", None, path, exc.where, exc.message).path, exc.message
    else:
        yield path, _describe(exc)


def problem_at(source: str, flag: str | None, path: Where, where: tuple[str | int, ...], message: str) -> Problem:
    """A problem at ``path`` followed down ``where``."""
    path = render(path)
    for step in where:
        path = child_path(path, step)
    return Problem(source, path, message, flag)


def structure(raw: Any, cls: type, *, source: str, path: Where, flag: str | None) -> tuple[Any, list[Problem]]:
    """Build ``cls`` from decoded JSON; on failure return None and every problem found."""
    try:
        return CONVERTER.structure(raw, cls), []
    except (ClassValidationError, IterableValidationError, Broken) as exc:
        return None, [Problem(source, p, m, flag) for p, m in _walk(exc, render(path), cls)]


__all__ = [
    "Broken", "CONVERTER", "FileSpec", "FlagdFlagSpec", "SimpleFlagSpec",
    "child_path", "json_type", "problem_at", "structure", "variant_kind",
]
