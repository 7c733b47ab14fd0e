"""Flags in the simple format: ``{"enabled": true, "rollout_percentage": 25, "allowed_users": [...]}``.

A simple flag is a boolean flag with variants ``on`` (true) and ``off`` (false), compiled
straight to a closure (no JSON Logic):

* ``enabled: false``: ``off`` for everyone, reason STATIC (not flagd's DISABLED: the flag exists
  and answers false);
* enabled with no rollout (null or absent) or 100: ``on`` for everyone, STATIC;
* otherwise a listed user (``targetingKey`` in ``allowed_users``) gets ``on``, TARGETING_MATCH;
  the others are bucketed like flagd's ``fractional`` (v2): ``bucket = (murmur3_x86_32(flag key +
  targetingKey, seed 0) * 100) >> 32`` and ``on`` iff ``bucket < percentage``, TARGETING_MATCH
  either way. Raising the percentage therefore never takes the flag from anyone, and flags
  bucket users independently. The bucketing does not follow ``--fractional``: changing the
  bucketing of flagd rules must not reshuffle who has a simple flag.
* a context without a string ``targetingKey`` cannot be bucketed: ``off``, reason DEFAULT
  (flagd's answer when a ``fractional`` has no bucketing key). Same with 0% and no one listed,
  where nobody can have the flag: ``off``, STATIC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mmh3

from agent.engine.model import (
    DEFAULT,
    TARGETING_MATCH,
    CompiledFlag,
    FrozenDict,
    Problem,
    Resolution,
    Resolver,
    canonical_json,
    definition_text,
    fingerprint,
)
from agent.engine.rules.errors import Where
from agent.engine.schema import SimpleFlagSpec, problem_at, structure
from agent.engine.tables import static_table, variant_table

VARIANTS: Mapping[str, bool] = FrozenDict(on=True, off=False)


def rollout_bucket(flag_key: str, targeting_key: str) -> int:
    """The user's bucket, 0-99, for ``flag_key``: flagd's v2 fractional bucketing over 100."""
    return (mmh3.hash((flag_key + targeting_key).encode("utf-8", "surrogatepass"), 0, signed=False) * 100) >> 32


def compile_simple_flag(key: str, raw: dict, path: Where, *, source: str, metadata: Mapping[str, Any],
                        found: list[Problem], text: bytes) -> CompiledFlag | None:
    """The compiled simple flag, or None with what breaks it added to ``found``.

    ``text``: the flag's canonical JSON, which with the file's metadata makes its fingerprint.
    """
    spec, problems = structure(raw, SimpleFlagSpec, source=source, path=path, flag=key)
    found.extend(problems)
    # Read from the raw flag, so that these are checked even when a field above is broken.
    name = raw.get("name")
    if type(name) is str and name != key:
        found.append(problem_at(source, key, path, ("name",),
                                f"must equal the flag key {key!r} (or be left out), got {name!r}"))
    if raw.get("rollout") is not None and raw.get("rollout_percentage") is not None:
        found.append(problem_at(source, key, path, ("rollout",), "give rollout_percentage or rollout, not both"))
    if found or spec is None:
        return None
    default_variant, static, resolver = _compile(key, spec, metadata)
    return CompiledFlag(
        key=key, value_type="boolean", variants=VARIANTS, default_variant=default_variant,
        metadata=metadata, enabled=spec.enabled, source=source, format="simple",
        fingerprint=fingerprint(text, canonical_json(metadata)),
        static=static, resolver=resolver, definition=definition_text(text),
    )


def _compile(key: str, spec: SimpleFlagSpec, metadata: Mapping[str, Any]) -> tuple[str, dict | None, Resolver | None]:
    """(default variant, static table or None, resolver or None) of a valid simple flag."""
    pct = spec.rollout_percentage if spec.rollout_percentage is not None else spec.rollout
    users = frozenset(spec.allowed_users or ())
    if not spec.enabled:
        return "off", static_table(key, VARIANTS, "off", metadata), None
    if pct is None or pct >= 100:
        return "on", static_table(key, VARIANTS, "on", metadata), None
    if pct <= 0 and not users:
        return "off", static_table(key, VARIANTS, "off", metadata), None
    return "off", None, _rollout_resolver(key, pct, users, metadata)


def _rollout_resolver(key: str, pct: float, users: frozenset[str], metadata: Mapping[str, Any]) -> Resolver:
    on = variant_table(key, "on", True, TARGETING_MATCH, metadata)
    off = variant_table(key, "off", False, TARGETING_MATCH, metadata)
    unknown = variant_table(key, "off", False, DEFAULT, metadata)
    hash32 = mmh3.hash
    key_bytes = key.encode("utf-8", "surrogatepass")

    def resolve(data: dict, expected_type: str | None, now: int | None) -> Resolution | None:
        user = data.get("targetingKey")
        if type(user) is not str or not user:
            return unknown[expected_type]
        # Bytes, never str: mmh3 crashes the process on a str holding a lone surrogate.
        if user in users or (hash32(key_bytes + user.encode("utf-8", "surrogatepass"), 0, signed=False) * 100) >> 32 < pct:
            return on[expected_type]
        return off[expected_type]

    return resolve
