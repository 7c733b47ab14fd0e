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

from collections.abc import Mapping
from typing import Any

from agent.engine.model import ERROR, NO_DEFAULT, VALUE_TYPES, CompiledFlag, Resolution
from protocol.errors import FLAG_NOT_FOUND, INVALID_CONTEXT, TYPE_MISMATCH

__all__ = ["NO_DEFAULT", "Resolution", "evaluate"]

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
