"""``explain``: the answer :func:`~agent.engine.evaluate.evaluate` gives, and how it was reached.

The answer is ``evaluate``'s own (same function, same clock reading), so explain can never
disagree with evaluate. The trace comes from a second, traced compilation of the flag's rule
(:mod:`agent.engine.rules.tracing`), made when a flag is first explained and kept per flag
version (its key and fingerprint), so plain evaluation carries no cost for it. The last step
says how the variant was chosen from what the rule returned, or why the default or an error
was; tests check that it names the variant ``evaluate`` answered.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from agent.engine.evaluate import evaluate
from agent.engine.formats.simple import rollout_bucket
from agent.engine.model import NO_DEFAULT, CompiledFlag, Resolution
from agent.engine.rules.errors import render
from agent.engine.rules.refs import resolve_refs
from agent.engine.rules.tracing import TracedRule, Trace, compile_traced

_CACHE_SIZE = 256
#: The largest expansion explain makes of a rule with references (the rule itself kept within
#: max-rule-nodes when it loaded; its literal lists count once there, item by item here).
_EXPLAIN_MAX_NODES = 1_000_000
_traced: OrderedDict[tuple[str, bytes], TracedRule] = OrderedDict()


@attrs.frozen
class Explanation:
    resolution: Resolution
    #: One JSON object per step, in order, each with ``op`` and ``depth`` (see docs/protocol.md).
    trace: list[dict[str, Any]]


def explain(flags: Mapping[str, CompiledFlag], key: str, context: Mapping[str, Any] | None = None, *,
            expected_type: str | None = None, default: Any = NO_DEFAULT, now: int | None = None) -> Explanation:
    """Evaluate flag ``key`` as :func:`evaluate` does and trace how its answer came about."""
    now = int(time.time()) if now is None else now
    res = evaluate(flags, key, context, expected_type=expected_type, default=default, now=now)
    flag = flags.get(key)
    if flag is None:
        return Explanation(res, [{"op": "flag", "depth": 0, "key": key, "found": False,
                                  "why": f"no flag {key!r} is served: {res.error_code}"}])
    steps: list[dict[str, Any]] = [{
        "op": "flag", "depth": 0, "key": key, "found": True, "source": flag.source, "format": flag.format,
        "state": "ENABLED" if flag.enabled else "DISABLED", "variants": list(flag.variants),
        "default_variant": flag.default_variant,
    }]
    if flag.broken:
        steps.append(_final(res, why=f"the flag failed validation and answers {res.error_code}: "
                                     f"{res.error_message}"))
    elif not flag.enabled and flag.format != "simple":
        steps.append(_final(res, why="the flag's state is DISABLED: no variant, the caller's default"))
    elif flag.rule is not None:
        steps.extend(_targeting(flag, res, context, now))
    elif flag.resolver is not None:
        steps.extend(_simple_rollout(flag, res, context))
    else:
        steps.append(_final(res, why=_static_why(flag, res)))
    return Explanation(res, steps)


def _final(res: Resolution, *, why: str, **facts: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"op": "result", "depth": 0, **facts, "variant": res.variant, "reason": res.reason}
    if res.error_code is not None:
        step["error"] = res.error_code
    step["why"] = why
    return step


def _static_why(flag: CompiledFlag, res: Resolution) -> str:
    if res.error_code is not None:
        return f"{res.error_message} ({res.error_code})"
    if flag.format == "simple":
        return f"a simple flag with {'no rollout' if flag.enabled else 'enabled: false'}: variant {res.variant!r} for everyone"
    if flag.default_variant is None:
        return "no targeting and no default variant: the caller's default"
    return f"no targeting: the default variant {flag.default_variant!r}"


# --- flagd targeting ---------------------------------------------------------------------------

def traced_rule(flag: CompiledFlag) -> TracedRule:
    """The flag's rule compiled for tracing, made on first use and kept per flag version."""
    cache_key = (flag.key, flag.fingerprint)
    rule = _traced.get(cache_key)
    if rule is not None:
        _traced.move_to_end(cache_key)
        return rule
    assert flag.rule is not None
    text, fractional, evaluators = flag.rule
    raw = orjson.loads(text) if text else orjson.loads(flag.definition)["targeting"]
    if evaluators:  # expanded now, for this flag alone (its size is bounded by max-rule-nodes)
        raw = resolve_refs(raw, evaluators, max_nodes=_EXPLAIN_MAX_NODES)
    rule = compile_traced(raw, flag_key=flag.key, fractional=fractional,
                          path=render((("$.flags", flag.key), "targeting")))
    _traced[cache_key] = rule
    if len(_traced) > _CACHE_SIZE:
        _traced.popitem(last=False)
    return rule


def _targeting(flag: CompiledFlag, res: Resolution, context: Mapping[str, Any] | None, now: int) -> list[dict]:
    """Run the traced rule as the flag's resolver runs the plain one, then say what it chose."""
    data = {"targetingKey": None, **(context or {}), "$flagd": {"flagKey": flag.key, "timestamp": now}}
    trace = Trace(base_depth=1)
    steps: list[dict[str, Any]] = [{"op": "targeting", "depth": 0, "context_keys": sorted(k for k in data if k != "$flagd")}]
    try:
        chosen = traced_rule(flag).run(data, trace)
    except Exception as exc:
        steps.extend(trace.steps)
        steps.append(_final(res, why=f"the rule could not be evaluated ({exc}): {res.error_code}"))
        return steps
    steps.extend(trace.steps)
    if trace.dropped:
        steps.append({"op": "truncated", "depth": 1, "steps_not_shown": trace.dropped})
    name, why = _variant_of(flag, chosen)
    if res.error_code is not None and name is not None and name in flag.variants:
        why += f", but {res.error_message} ({res.error_code})"
    steps.append(_final(res, why=why, rule_returned=chosen, chosen=name))
    return steps


def _variant_of(flag: CompiledFlag, chosen: Any) -> tuple[str | None, str]:
    """The variant a rule result names (as the targeting resolver maps it), and why."""
    if chosen is None:
        if flag.default_variant is None:
            return None, "the rule returned null and the flag has no default variant: the caller's default"
        return flag.default_variant, f"the rule returned null: the default variant {flag.default_variant!r}"
    if chosen is True or chosen is False:
        name = "true" if chosen else "false"
    else:
        name = chosen if type(chosen) is str else str(chosen)
    if name not in flag.variants:
        return name, f"the rule returned {chosen!r}, which is not one of the flag's variants"
    return name, f"the rule returned {chosen!r}: variant {name!r}"


# --- simple flags --------------------------------------------------------------------------------

def _simple_rollout(flag: CompiledFlag, res: Resolution, context: Mapping[str, Any] | None) -> list[dict]:
    """A simple flag with a rollout: the allow list, then the user's bucket against the percentage."""
    raw = orjson.loads(flag.definition)
    pct = raw.get("rollout_percentage")
    if pct is None:
        pct = raw.get("rollout")
    users = raw.get("allowed_users") or []
    user = context.get("targetingKey") if context else None
    steps: list[dict[str, Any]] = []
    if type(user) is not str or not user:
        steps.append({"op": "targetingKey", "depth": 1, "result": user})
        steps.append(_final(res, why="no string targetingKey to bucket by: variant 'off' (DEFAULT)"))
        return steps
    listed = user in users
    steps.append({"op": "allowed_users", "depth": 1, "args": [user, len(users)], "result": listed})
    if listed:
        steps.append(_final(res, why=f"{user!r} is in allowed_users: variant 'on'"))
        return steps
    bucket = rollout_bucket(flag.key, user)
    steps.append({"op": "rollout", "depth": 1, "bucket_by": flag.key + user, "bucket": bucket, "total": 100,
                  "percentage": pct, "result": bucket < pct})
    side = "below" if bucket < pct else "not below"
    steps.append(_final(res, why=f"bucket {bucket} of 100 is {side} the rollout of {pct}%: "
                                 f"variant {'on' if bucket < pct else 'off'!r}"))
    return steps


__all__ = ["Explanation", "explain", "traced_rule"]
