"""flagd's ``fractional`` operator: deterministic, weighted bucketing of a subject.

``{"fractional": [bucketBy?, [variant, weight?], ...]}``. Without a bucketing expression
(the "shorthand", first item an array) the subject is the flag key plus the context's
``targetingKey``. The subject is hashed with murmur3_x86_32 (seed 0) and the hash chooses
a bucket by the cumulative weights (see ``buckets`` for the two arithmetics).

Three bucketing versions exist, chosen per agent (``--fractional``):

- ``v1`` (flagd up to v0.14, before open-feature/flagd#1909): the subject as in ``v2``; the
  hash is placed by legacy flagd's floating-point percentages, so files written for an older
  flagd keep their users in the same buckets.
- ``v2`` (the flagd daemon since v0.15): the bytes are the UTF-8 of the bucketing string
  (``flagKey + targetingKey`` in the shorthand). A bucketing expression that gives null
  falls back to the shorthand subject, as flagd does; any other non-string gives null.
  The bucket is ``(hash * total_weight) >> 32``.
- ``v3`` (openfeature-flagd-core 2.x): the bytes are the deterministic CBOR of the
  bucketing value, which may be any JSON value; the shorthand hashes
  ``[flagKey, targetingKey]``; a null bucketing value gives null. Placed as in ``v2``.

Literal weights are checked and summed at compile time, so a call is one hash, one
multiplication and one bisection. A weight computed per call (time-based rollouts) that
comes out negative counts as 0; one that is not a whole number makes the result null.
A missing or non-string ``targetingKey`` in the shorthand, a total weight of 0 or one
above 2**31 - 1 all give null, which flagd turns into the default variant.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import mmh3

from . import cbor
from .buckets import dynamic_choice, runtime_weight, static_choice
from .errors import Where
from .nodes import Arg, Compiler, Const, Node, as_function, is_bare

VERSIONS = ("v1", "v2", "v3")
_CBOR_VERSIONS = frozenset({"v3"})  # the others hash the UTF-8 of a string subject

Hasher = Callable[[Any], "int | None"]
Weight = Union[int, Node]


def _murmur(data: bytes) -> int:
    return mmh3.hash(data, 0, False)


def _targeting_key(data: Any) -> str | None:
    key = data.get("targetingKey") if type(data) is dict else None
    return key if type(key) is str and key else None


def _shorthand_hasher(version: str, flag_key: str) -> Hasher:
    """The subject is the flag and the context's targetingKey."""
    if version not in _CBOR_VERSIONS:

        def subject(key: str) -> bytes:
            return (flag_key + key).encode("utf-8")

    else:
        prefix = b"\x82" + cbor.encode(flag_key)  # a 2-item array: [flagKey, targetingKey]

        def subject(key: str) -> bytes:
            return prefix + cbor.encode(key)

    def by_targeting_key(data: Any) -> int | None:
        key = _targeting_key(data)
        if key is None:
            return None
        try:
            return _murmur(subject(key))
        except UnicodeEncodeError:  # a lone surrogate: not a string flagd could receive
            return None

    return by_targeting_key


def _expression_hasher(version: str, flag_key: str, bucket_by: Node) -> Hasher:
    """The subject is whatever the bucketing expression gives."""
    value_of = as_function(bucket_by)
    if version not in _CBOR_VERSIONS:
        fallback = _shorthand_hasher(version, flag_key)

        def by_string(data: Any) -> int | None:
            value = value_of(data)
            if type(value) is str:
                try:
                    return _murmur(value.encode("utf-8"))
                except UnicodeEncodeError:
                    return None
            return fallback(data) if value is None else None

        return by_string

    def by_value_v3(data: Any) -> int | None:
        value = value_of(data)
        if value is None:
            return None
        try:
            return _murmur(cbor.encode(value))
        except (TypeError, ValueError, RecursionError):
            return None

    return by_value_v3


def _literal_weight(c: Compiler, raw: Any, path: Where) -> int | None:
    """Check a weight written in the rule (the schema wants a non-negative integer)."""
    weight = runtime_weight(raw)
    if weight is None:
        c.problem(path, f"a fractional weight must be a non-negative integer or an expression, got {raw!r}")
    elif raw < 0:
        c.problem(path, f"a fractional weight must not be negative, got {raw!r}")
    return weight


def _bucket(c: Compiler, raw: Any, path: Where) -> tuple[Node, Weight] | None:
    """Compile one ``[variant, weight?]``; None when it can never be used."""
    if type(raw) is not list or not 1 <= len(raw) <= 2:
        c.problem(path, "a fractional bucket must be an array [variant] or [variant, weight]")
        return None
    variant = c.compile(raw[0], (path, 0))
    if len(raw) == 1:
        return variant, 1
    weight_path = (path, 1)
    if type(raw[1]) is dict:
        node = c.compile(raw[1], weight_path)
        if not isinstance(node, Const):
            return variant, node
        weight = runtime_weight(node.value)
    else:
        weight = _literal_weight(c, raw[1], weight_path)
    return None if weight is None else (variant, weight)


def compile_fractional(c: Compiler, args: Sequence[Arg], path: Where) -> Node:
    """``{"fractional": [...]}`` -> the chosen variant's value, or null."""
    if not args or is_bare(args, path):
        c.problem(path, "fractional takes an array: [bucketBy?, [variant, weight?], ...]")
        return Const(None)
    first, first_path = args[0]
    if type(first) is list:
        hasher = _shorthand_hasher(c.fractional, c.flag_key)
        entries = args
    else:
        if type(first) is not dict:
            c.problem(
                first_path,
                "the bucketing value must be an expression such as {\"var\": \"email\"}, "
                "or left out to bucket by flag key and targetingKey",
            )
        hasher = _expression_hasher(c.fractional, c.flag_key, c.compile(first, first_path))
        entries = args[1:]
    buckets = [_bucket(c, raw, entry_path) for raw, entry_path in entries]
    if not buckets or any(bucket is None for bucket in buckets):
        return Const(None)
    variants = [as_function(variant) for variant, _ in buckets]  # type: ignore[misc]
    weights = [weight for _, weight in buckets]  # type: ignore[misc]
    if all(type(weight) is int for weight in weights):
        return static_choice(c.fractional, hasher, variants, weights)  # type: ignore[arg-type]
    return dynamic_choice(c.fractional, hasher, variants, [_weight_function(weight) for weight in weights])


def _weight_function(weight: Weight) -> Callable[[Any], Any]:
    if type(weight) is int:
        return lambda _data: weight
    return weight  # type: ignore[return-value]
