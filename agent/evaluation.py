"""Evaluate a flag for a context: a pure function of (flags, key, context), with flagd's semantics.

Everything that does not depend on the context is decided when a flag is compiled: a static
flag carries the finished :class:`Resolution` for each requested type, and a targeted flag
carries one per variant, so a request does a dict lookup, runs the compiled rule (if any) and
returns a prebuilt object. Only a caller-supplied default makes a new one.

Semantics follow flagd (and its Python reference evaluator, ``openfeature-flagd-core``):

* no targeting: the default variant, reason STATIC;
* targeting returns ``true``/``false``: variants "true"/"false"; a string: that variant; another
  scalar: its ``str()``; ``null``: the default variant with reason DEFAULT;
* no default variant: the caller's default, variant None, reason DEFAULT;
* ``state: DISABLED``: the caller's default, variant None, reason DISABLED;
* a variant the flag does not define: GENERAL; a rule that raises: PARSE_ERROR for that flag;
* a requested type the value does not have: TYPE_MISMATCH. ``float`` accepts integers (and
  returns them as floats); ``integer`` does not accept floats; booleans are not numbers.
  Answers without a variant (caller's default) are not type-checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from protocol.errors import FLAG_NOT_FOUND, GENERAL, INVALID_CONTEXT, PARSE_ERROR, TYPE_MISMATCH

from .model import (
    DEFAULT,
    DISABLED,
    EMPTY,
    ERROR,
    NO_DEFAULT,
    STATIC,
    TARGETING_MATCH,
    VALUE_TYPES,
    CompiledFlag,
    Resolution,
    Resolver,
)

__all__ = ["NO_DEFAULT", "Resolution", "evaluate", "static_table", "targeting_resolver", "variant_table"]

#: Every valid ``expected_type``; None means "any".
EXPECTED_TYPES: tuple[str | None, ...] = (None, *VALUE_TYPES)

Table = dict  # expected_type -> Resolution, or None where the value does not have that type
_ABSENT: Any = object()


def evaluate(
    flags: Mapping[str, CompiledFlag],
    key: str,
    context: Mapping[str, Any] | None = None,
    *,
    expected_type: str | None = None,
    default: Any = NO_DEFAULT,
    now: int | None = None,
) -> Resolution:
    """Resolve flag ``key`` for ``context``.

    Args:
        flags: compiled flags, e.g. a snapshot's.
        context: the evaluation context; ``targetingKey`` is the user id. Not modified.
        expected_type: the type the caller wants ("boolean", "string", "integer", "float",
            "object"), or None to take the flag's own.
        default: the caller's default, reported as the value when the flag resolves to no
            variant or fails; without one such answers carry :data:`NO_DEFAULT`.
        now: the ``$flagd.timestamp`` (seconds) rules see; the current time when None.

    Raises:
        ValueError: ``expected_type`` is not one of the types above (a programming error; the
            wire layer validates what clients send).
    """
    flag = flags.get(key)
    if flag is None:
        res = Resolution(key, NO_DEFAULT, None, ERROR, FLAG_NOT_FOUND, f"flag {key!r} is not defined")
    elif flag.static is not None:
        res = flag.static.get(expected_type, _ABSENT)
        if res is _ABSENT:
            raise ValueError(_bad_type(expected_type))
    elif context is not None and type(context) is not dict and not isinstance(context, Mapping):
        res = Resolution(key, NO_DEFAULT, None, ERROR, INVALID_CONTEXT,
                         f"the context must be an object, not {type(context).__name__}")
    elif expected_type is not None and expected_type not in VALUE_TYPES:
        raise ValueError(_bad_type(expected_type))
    else:
        res = flag.resolver(context, expected_type, now)
    if res is None:  # built on demand: mismatches are rare and their tables would be large
        res = Resolution(key, NO_DEFAULT, None, ERROR, TYPE_MISMATCH,
                         f"flag {key!r} was requested as {expected_type}, but it is a {flag.value_type} flag")
    if res.value is NO_DEFAULT and default is not NO_DEFAULT:
        return Resolution(res.key, default, res.variant, res.reason, res.error_code, res.error_message, res.metadata)
    return res


def _bad_type(expected_type: Any) -> str:
    return f"expected_type must be None or one of {', '.join(VALUE_TYPES)}, not {expected_type!r}"


# --- building the tables at compile time --------------------------------------------------------

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
