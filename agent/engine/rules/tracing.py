"""A targeting rule compiled a second way, for ``explain``: the same operators, each step recorded.

The plain compiler folds constants and builds bare closures; nothing on the request path
knows tracing exists. ``compile_traced`` runs the same compiler (the same operator table, so
the same semantics) with one difference: every operator node it builds is wrapped in a
closure that records the step (operator, where it is in the rule, the values of its operands,
what it returned) into the :class:`Trace` of the evaluation under way. Because a wrapped node
is never a ``Const``, nothing is folded away at compile time and every operator of the rule
shows up when it runs. Folding never changes a result (constant expressions are computed by
the same functions), so the traced rule answers what the plain one does; the test suite
checks that over the flagd testbed's flags.

``fractional`` gets a traced twin here that also records the hash, the bucket and each
variant's range; ``if`` steps say which branch was taken.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Any, Sequence

from .compiler import _operands, _RuleCompiler
from .errors import Where, render
from .buckets import MAX_WEIGHT_SUM, PERCENTAGE_VERSIONS, legacy_point, percentage_ends, runtime_weight
from .fractional import _bucket, _expression_hasher, _shorthand_hasher, _targeting_key
from .jsvalues import truthy
from .nodes import Arg, Const, Evaluator, Node, as_function, is_bare

#: Operators whose second operand is a rule run once per item of the first: its steps repeat,
#: so the step shows that operand as written, not one item's value.
_PER_ITEM = frozenset({"map", "filter", "all", "none", "some", "reduce"})
_SKIPPED: Any = object()
#: Lists and strings longer than this are cut in a step (an allow list of 10,000 users).
_SHOWN_ITEMS = 20
_SHOWN_CHARS = 500


class Trace:
    """The steps of one traced evaluation, a parent before its operands (pre-order).

    Each step is a JSON object: ``op``, ``path`` (JSON path of the operator in the rule),
    ``depth`` (0 for the rule's root, offset by ``base_depth``), then ``args``, ``result`` and,
    where it applies, ``skipped``, ``branch``, ``bucket``, ``error`` or ``constant`` (the
    operator's answer was known when the rule was loaded; its operands do not run).
    """

    def __init__(self, *, base_depth: int = 0, limit: int = 2000) -> None:
        self.steps: list[dict[str, Any]] = []
        self.base_depth = base_depth
        self.limit = limit
        #: Steps not recorded once ``limit`` was reached (a ``map`` over a long array).
        self.dropped = 0
        self._open: list[dict[str, Any]] = []
        self._wheres: list[Where] = []

    def note(self, **facts: Any) -> None:
        """Add facts to the innermost step under way (the traced ``fractional`` uses it)."""
        if self._open:
            self._open[-1].update(facts)


class TracedRule:
    """A rule compiled for tracing; :meth:`run` evaluates it and returns its steps."""

    def __init__(self, evaluate: Evaluator, box: list[Trace | None]) -> None:
        self._evaluate = evaluate
        self._box = box

    def run(self, data: Any, trace: Trace) -> Any:
        """Evaluate the rule against ``data`` (the full context, ``$flagd`` included), recording
        into ``trace``. Raises what the rule raises; the steps up to it are in ``trace``."""
        self._box[0] = trace
        try:
            return self._evaluate(data)
        finally:
            self._box[0] = None


def compile_traced(rule: Any, *, flag_key: str, fractional: str = "v2", path: Where = "$.targeting") -> TracedRule:
    """Compile ``rule`` (``$ref`` resolved; one the plain compiler accepted) for tracing."""
    box: list[Trace | None] = [None]
    if type(rule) is not dict or not rule:
        return TracedRule(lambda _data: None, box)
    compiler = _TracingCompiler(flag_key, fractional, box)
    return TracedRule(as_function(compiler.compile(rule, path)), box)


class _TracingCompiler(_RuleCompiler):
    def __init__(self, flag_key: str, fractional: str, box: list[Trace | None]) -> None:
        # Lenient: a rule that loaded was either clean or served as flagd serves it.
        super().__init__(flag_key, fractional, strict=False, on_problem=None)
        self.box = box

    def compile(self, raw: Any, path: Where) -> Node:
        if type(raw) is not dict or len(raw) != 1 or "$ref" in raw:
            return super().compile(raw, path)
        ((name, operands),) = raw.items()
        operator_path = (path, name)
        args = _operands(operands, operator_path)
        if name == "fractional":
            node = _compile_fractional(self, args, operator_path)
        else:
            node = super().compile(raw, path)
        return _traced(self.box, name, args, path, operator_path, node)


def _traced(box: list[Trace | None], name: str, args: Sequence[Arg], where: Where, operator_path: Where,
            node: Node) -> Evaluator:
    shown_path = render(operator_path)
    # Constant although its operands are not (they never are here): the operator answers
    # without them (a malformed sem_ver is null), or all of them are literals.
    constant = isinstance(node, Const)
    function = as_function(node)

    def traced(data: Any) -> Any:
        trace = box[0]
        if trace is None:
            return function(data)
        if len(trace.steps) >= trace.limit:
            trace.dropped += 1
            return function(data)
        step: dict[str, Any] = {"op": name, "path": shown_path, "depth": trace.base_depth + len(trace._open)}
        if constant:
            step["constant"] = True
        trace.steps.append(step)
        trace._wheres.append(where)
        start = len(trace.steps)
        trace._open.append(step)
        try:
            result = function(data)
        except Exception as exc:
            step["error"] = str(exc) or type(exc).__name__
            raise
        finally:
            trace._open.pop()
            _describe(step, name, args, trace, start)
        step["result"] = _brief(result)
        return result

    return traced


def _describe(step: dict[str, Any], name: str, args: Sequence[Arg], trace: Trace, start: int) -> None:
    """Fill in ``args`` (and ``skipped``, ``branch``) from the operand steps just recorded."""
    depth = step["depth"] + 1
    found = {trace._wheres[i]: trace.steps[i] for i in range(start, len(trace.steps))
             if trace.steps[i]["depth"] == depth}
    values = []
    for index, (raw, arg_path) in enumerate(args):
        if name in _PER_ITEM and index == 1:
            values.append(raw)  # the per-item rule, as written
        else:
            values.append(_value_of(raw, arg_path, found))
    skipped = [i for i, value in enumerate(values) if value is _SKIPPED]
    if name in ("if", "?:"):
        step["branch"] = _branch(values)
    step["args"] = [None if value is _SKIPPED else _brief(value) for value in values]
    if skipped:
        step["skipped"] = skipped


def _value_of(raw: Any, where: Where, found: dict[Where, dict[str, Any]]) -> Any:
    """An operand's value: a literal as written, an operation's result, or _SKIPPED."""
    kind = type(raw)
    if kind is dict and len(raw) == 1 and "$ref" not in raw:
        step = found.get(where)
        if step is None or "result" not in step:
            return _SKIPPED
        return step["result"]
    if kind is list and any(type(item) is dict or type(item) is list for item in raw):
        items = [_value_of(item, (where, index), found) for index, item in enumerate(raw)]
        return _SKIPPED if any(item is _SKIPPED for item in items) else items
    return raw


def _branch(values: list[Any]) -> dict[str, Any]:
    """Which branch of ``{"if": [c1, t1, c2, t2, ..., else?]}`` was taken, from the conditions."""
    for index in range(0, len(values) - 1, 2):
        condition = values[index]
        if condition is _SKIPPED:
            return {"taken": "unknown"}
        if truthy(condition):
            return {"taken": "then", "condition": index // 2}
    if len(values) % 2:
        return {"taken": "else"}
    return {"taken": "none", "why": "no condition held and there is no else: null"}


def _brief(value: Any) -> Any:
    """``value`` for a step: long lists and strings cut, so a trace stays readable."""
    kind = type(value)
    if kind is str and len(value) > _SHOWN_CHARS:
        return value[:_SHOWN_CHARS] + f"... ({len(value)} characters)"
    if kind is list or kind is tuple:
        if len(value) > _SHOWN_ITEMS:
            return [_brief(item) for item in value[:_SHOWN_ITEMS]] + [f"... {len(value) - _SHOWN_ITEMS} more"]
        return [_brief(item) for item in value]
    return value


# --- fractional, traced ------------------------------------------------------------------------

def _compile_fractional(c: _TracingCompiler, args: Sequence[Arg], path: Where) -> Node:
    """``fractional`` as :func:`.fractional.compile_fractional` builds it, noting the bucket."""
    if not args or is_bare(args, path):
        return Const(None)
    first, first_path = args[0]
    if type(first) is list:
        hasher = _shorthand_hasher(c.fractional, c.flag_key)
        entries, shorthand = args, True
    else:
        hasher = _expression_hasher(c.fractional, c.flag_key, c.compile(first, first_path))
        entries, shorthand = args[1:], False
    buckets = [_bucket(c, raw, entry_path) for raw, entry_path in entries]
    if not buckets or any(bucket is None for bucket in buckets):
        return Const(None)
    names = [raw[0] if type(raw) is list and raw and type(raw[0]) is not dict else f"(entry {index + 1}, computed)"
             for index, (raw, _) in enumerate(entries)]
    variants = [as_function(variant) for variant, _ in buckets]  # type: ignore[misc]
    weights = [(lambda _data, w=weight: w) if type(weight) is int else weight  # type: ignore[misc]
               for _, weight in buckets]
    box, flag_key, version = c.box, c.flag_key, c.fractional

    def fractional(data: Any) -> Any:
        trace = box[0]
        note = trace.note if trace is not None else (lambda **_facts: None)
        if shorthand:
            subject = _targeting_key(data)
            note(bucket_by=[flag_key, subject] if version == "v3" else f"{flag_key}{subject or ''}")
        hashed = hasher(data)
        if hashed is None:
            note(bucket={"why": "nothing to bucket by (no string targetingKey, or the bucketing value "
                                "was null or not usable): null, so the default variant"})
            return None
        found = []
        for weight_of in weights:
            weight = runtime_weight(weight_of(data))
            if weight is None:
                note(bucket={"hash": hashed, "why": "a computed weight is not a whole number: null"})
                return None
            found.append(weight)
        total = sum(found)
        if total <= 0 or total > MAX_WEIGHT_SUM:
            note(bucket={"hash": hashed, "total": total, "why": f"the weights sum to {total}: null"})
            return None
        if version in PERCENTAGE_VERSIONS:  # v1: flagd's legacy floating-point percentages
            ends: list[Any] = percentage_ends(found, total)
            point: Any = legacy_point(hashed)
            facts = {"hash": hashed, "percent": point}
        else:
            ends = list(accumulate(found))
            point = (hashed * total) >> 32
            facts = {"hash": hashed, "bucket": point, "total": total}
        index = bisect_right(ends, point)
        ranges = [{"variant": name, "from": low, "to": high}  # from <= bucket < to
                  for name, low, high in zip(names, [0, *ends[:-1]], ends)]
        if index >= len(ends):
            note(bucket={**facts, "ranges": ranges, "why": "past the last range (legacy flagd's edge): null"})
            return None
        chosen = variants[index](data)
        note(bucket={**facts, "chosen": chosen, "ranges": ranges})
        return chosen

    return fractional
