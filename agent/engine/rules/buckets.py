"""Where a subject's 32-bit hash lands among a ``fractional``'s weighted buckets.

Both arithmetics walk the buckets in the rule's order and take the first one whose
cumulative end lies above the hash's point; they differ in what the point and the ends are.

- **integer** (``v2``, ``v3``; flagd since v0.15 and its high-precision bucketing ADR): the
  hash is read unsigned, the point is ``(hash * total_weight) >> 32`` and the ends are the
  running sums of the weights. Exact: any weight of at least 1 gets users.
- **percentage** (``v1``, flagd's legacy bucketing: ``core/pkg/evaluator/fractional.go`` up
  to flagd v0.14, before open-feature/flagd#1909): the hash is read as a *signed* 32-bit
  integer and the point is the double ``abs(hash) / (2**31 - 1) * 100``; a bucket spans the
  double ``100 * weight / total_weight`` and the ends are the running double sums of those
  spans, added in the rule's order. These are the IEEE-754 operations flagd's Go code
  performs, in the same order and with the same roundings, so a user lands where legacy
  flagd put them. A point at or past the last end (the hashes ``+-(2**31 - 1)`` and
  ``-2**31``, and any rounding sliver the spans leave below 100) lies in no bucket: legacy
  flagd answered the empty variant ``""`` there, which it then reported as an error; here it
  is null, which the flag turns into its default variant, as for every other "no bucket"
  case of this operator.

The weights of a rule are checked (and, when literal, summed) by ``fractional``; a total of
0 or one above ``MAX_WEIGHT_SUM`` chooses nothing in either arithmetic.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Any, Callable, Sequence

from .nodes import Const, Node

MAX_WEIGHT_SUM = 2**31 - 1
PERCENTAGE_VERSIONS = frozenset({"v1"})

Hasher = Callable[[Any], "int | None"]  # the subject's unsigned 32-bit murmur3, or None
Variant = Callable[[Any], Any]


def runtime_weight(value: Any) -> int | None:
    """A weight as flagd counts it: negatives clamp to 0, fractions are refused (None)."""
    kind = type(value)
    if kind is int:
        return value if value > 0 else 0
    if kind is float and value.is_integer():
        return int(value) if value > 0 else 0
    return None


def legacy_point(hashed: int) -> float:
    """v1: the unsigned hash read as flagd's ``int32``, as a percentage (0 to a hair above 100)."""
    signed = hashed - 2**32 if hashed >= 2**31 else hashed
    return abs(float(signed)) / float(MAX_WEIGHT_SUM) * 100.0


def percentage_ends(weights: Sequence[int], total: int) -> list[float]:
    """v1: the running double sum of each bucket's ``100 * weight / total`` percent."""
    return list(accumulate(100.0 * float(weight) / float(total) for weight in weights))


def _usable(total: int) -> bool:
    return 0 < total <= MAX_WEIGHT_SUM


def static_choice(version: str, hasher: Hasher, variants: list[Variant], weights: list[int]) -> Node:
    """Weights known at compile time: the ends are computed once, a call is a hash and a bisection."""
    total = sum(weights)
    if not _usable(total):
        return Const(None)
    if version in PERCENTAGE_VERSIONS:
        return _static_percentage(hasher, variants, percentage_ends(weights, total))
    ends = list(accumulate(weights))

    def fractional(data: Any) -> Any:
        hashed = hasher(data)
        if hashed is None:
            return None
        return variants[bisect_right(ends, (hashed * total) >> 32)](data)

    return fractional


def _static_percentage(hasher: Hasher, variants: list[Variant], ends: list[float]) -> Node:
    count = len(ends)

    def fractional_v1(data: Any) -> Any:
        hashed = hasher(data)
        if hashed is None:
            return None
        index = bisect_right(ends, legacy_point(hashed))
        return variants[index](data) if index < count else None

    return fractional_v1


def dynamic_choice(
    version: str, hasher: Hasher, variants: list[Variant], weight_functions: list[Callable[[Any], Any]]
) -> Node:
    """Some weight is an expression (a time-based rollout): the ends are computed per call."""
    percentage = version in PERCENTAGE_VERSIONS
    count = len(variants)

    def fractional(data: Any) -> Any:
        hashed = hasher(data)
        if hashed is None:
            return None
        weights = []
        for weight_of in weight_functions:
            weight = runtime_weight(weight_of(data))
            if weight is None:
                return None
            weights.append(weight)
        total = sum(weights)
        if not _usable(total):
            return None
        if percentage:
            index = bisect_right(percentage_ends(weights, total), legacy_point(hashed))
            return variants[index](data) if index < count else None
        return variants[bisect_right(list(accumulate(weights)), (hashed * total) >> 32)](data)

    return fractional
