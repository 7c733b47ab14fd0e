"""Answer tables built when a flag is compiled, so a request does a lookup, not a computation.

A table maps each expected type (None: the flag's own) to the finished :class:`Resolution`, or
None where the value does not have that type. The request-time side is
:func:`agent.engine.evaluate.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from agent.engine.model import (
    DEFAULT,
    DISABLED,
    EMPTY,
    ERROR,
    NO_DEFAULT,
    STATIC,
    TARGETING_MATCH,
    VALUE_TYPES,
    Resolution,
    Resolver,
)
from protocol.errors import GENERAL, PARSE_ERROR

#: Every valid ``expected_type``; None means "any".
EXPECTED_TYPES: tuple[str | None, ...] = (None, *VALUE_TYPES)

Table = dict  # expected_type -> Resolution, or None where the value does not have that type


_NONE_FIT: Table = dict.fromkeys(VALUE_TYPES)  # no expected type fits (filled in per value)


def variant_table(key: str, variant: str, value: Any, reason: str, metadata: Mapping[str, Any]) -> Table:
    """The answers for ``variant`` under each expected type (None where it does not fit).

    A value answers its own type; an integer also answers ``float``, as a float; booleans are
    not numbers.
    """
    exact = Resolution(key, value, variant, reason, None, None, metadata)
    table: Table = _NONE_FIT.copy()
    table[None] = exact
    kind = type(value)
    if kind is bool:
        table["boolean"] = exact
    elif kind is str:
        table["string"] = exact
    elif kind is int:
        table["integer"] = exact
        table["float"] = Resolution(key, float(value), variant, reason, None, None, metadata)
    elif kind is float:
        table["float"] = exact
    elif isinstance(value, (dict, list)):
        table["object"] = exact
    return table


def same_table(res: Resolution) -> Table:
    """One answer whatever the expected type (no variant, so no type check)."""
    return dict.fromkeys(EXPECTED_TYPES, res)


def default_table(key: str, variants: Mapping[str, Any], default_variant: str | None,
                  reason: str, metadata: Mapping[str, Any]) -> Table:
    """The default variant's answers with ``reason``; the caller's default when there is none."""
    if default_variant is None:
        return same_table(Resolution(key, NO_DEFAULT, None, DEFAULT, None, None, metadata))
    return variant_table(key, default_variant, variants[default_variant], reason, metadata)


def static_table(key: str, variants: Mapping[str, Any], default_variant: str | None,
                 metadata: Mapping[str, Any], *, enabled: bool = True) -> Table:
    """The answers of a flag without targeting (or disabled)."""
    if not enabled:
        return same_table(Resolution(key, NO_DEFAULT, None, DISABLED, None, None, metadata))
    return default_table(key, variants, default_variant, STATIC, metadata)


def broken_table(key: str, message: str) -> Table:
    """The answers of a flag that failed validation and was isolated: PARSE_ERROR."""
    return same_table(Resolution(key, NO_DEFAULT, None, ERROR, PARSE_ERROR, message, EMPTY))


def targeting_resolver(key: str, rule: Callable[[dict], Any], variants: Mapping[str, Any],
                       default_variant: str | None, metadata: Mapping[str, Any], *,
                       reads_clock: bool = True) -> Resolver:
    """A resolver running the compiled targeting ``rule`` and mapping its result to a variant.

    ``reads_clock=False`` (the rule cannot see ``$flagd.timestamp``) spares reading the clock on
    every call.
    """
    matches = {name: variant_table(key, name, value, TARGETING_MATCH, metadata) for name, value in variants.items()}
    fallback = default_table(key, variants, default_variant, DEFAULT, metadata)
    known = ", ".join(variants)
    clock = time.time
    timeless = {"flagKey": key}  # rules never write to the context, so one can be shared

    def resolve(context: Mapping[str, Any] | None, expected_type: str | None, now: int | None) -> Resolution | None:
        if reads_clock or now is not None:
            flagd = {"flagKey": key, "timestamp": int(clock()) if now is None else now}
        else:
            flagd = timeless
        ctx = {"targetingKey": None, **context, "$flagd": flagd} if context else {"targetingKey": None, "$flagd": flagd}
        try:
            chosen = rule(ctx)
        except Exception as exc:  # any failure of a rule is that flag's PARSE_ERROR, never a crash
            return Resolution(key, NO_DEFAULT, None, ERROR, PARSE_ERROR,
                              f"targeting of flag {key!r} could not be evaluated: {exc}")
        if chosen is None:
            return fallback[expected_type]
        if chosen is True:
            name = "true"
        elif chosen is False:
            name = "false"
        else:
            name = chosen if type(chosen) is str else str(chosen)
        table = matches.get(name)
        if table is None:
            return Resolution(key, NO_DEFAULT, None, ERROR, GENERAL, f"targeting of flag {key!r} chose variant "
                                                                     f"{name!r}, which is not one of its variants ({known})")
        return table[expected_type]

    return resolve
