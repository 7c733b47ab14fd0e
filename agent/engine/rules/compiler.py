"""``compile_rule``: walk a targeting rule once and return a plain Python closure.

The walk is the only place that looks at operator names or rule JSON. Each operator's
compile function (in ``logic``, ``arithmetic``, ``data``, ``arrays``, ``strings``,
``semver``, ``fractional``) sees its raw operands and returns a ``Const`` or a closure;
the request path only ever calls closures.

Two kinds of problem are told apart:

- a rule that *cannot* be evaluated (an unknown operator, a ``$ref`` nobody resolved, a
  targeting that is not an object) always raises ``RuleError``;
- a rule that flagd's JSON schema refuses but flagd's evaluators still run, best effort
  (a sem_ver with 2 operands, a negative literal weight, a ``"v1.0"`` literal version)
  raises ``RuleError`` when ``strict`` (the default: what ``flagsock validate`` wants), and
  otherwise compiles to what the flagd evaluators do at run time (mostly: answer null),
  reporting the problem to ``on_problem``. flagd itself warns and serves such flags, and
  the flagd test suites contain them, so a loader that must serve them passes
  ``strict=False``.

Either way the walk goes on past a problem (the broken node compiles to null), so the one
``RuleError`` raised at the end lists every problem of the rule (``RuleError.errors``), and
a person fixing a file sees them all at once.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs

from . import arithmetic, arrays, data, logic, strings
from .errors import RuleError, Where
from .fractional import VERSIONS, compile_fractional
from .nodes import Arg, Const, Evaluator, Node, OpCompiler, as_function
from .semver import compile_sem_ver

OPERATORS: Mapping[str, OpCompiler] = {
    "var": data.compile_var,
    "missing": data.compile_missing,
    "missing_some": data.compile_missing_some,
    "if": logic.compile_if,
    "?:": logic.compile_if,
    "and": logic.compile_and,
    "or": logic.compile_or,
    "!": logic.compile_not,
    "!!": logic.compile_truthy,
    "==": logic.compile_loose_equals,
    "!=": logic.compile_loose_not_equals,
    "===": logic.compile_strict_equals,
    "!==": logic.compile_strict_not_equals,
    "<": logic.compile_less,
    "<=": logic.compile_less_equal,
    ">": logic.compile_greater,
    ">=": logic.compile_greater_equal,
    "+": arithmetic.compile_add,
    "-": arithmetic.compile_subtract,
    "*": arithmetic.compile_multiply,
    "/": arithmetic.compile_divide,
    "%": arithmetic.compile_remainder,
    "max": arithmetic.compile_max,
    "min": arithmetic.compile_min,
    "map": arrays.compile_map,
    "filter": arrays.compile_filter,
    "reduce": arrays.compile_reduce,
    "all": arrays.compile_all,
    "none": arrays.compile_none,
    "some": arrays.compile_some,
    "merge": arrays.compile_merge,
    "in": arrays.compile_in,
    "cat": strings.compile_cat,
    "substr": strings.compile_substr,
    "starts_with": strings.compile_starts_with,
    "ends_with": strings.compile_ends_with,
    "sem_ver": compile_sem_ver,
    "fractional": compile_fractional,
}
_OPERATOR_NAMES = ", ".join(sorted(OPERATORS))


class _RuleCompiler:
    """One compilation: the flag it is for, the options, and where problems go."""

    def __init__(
        self, flag_key: str, fractional: str, strict: bool, on_problem: Callable[[RuleError], None] | None
    ) -> None:
        self.flag_key = flag_key
        self.fractional = fractional
        self._strict = strict
        self._on_problem = on_problem
        self.reads_clock = False
        self.errors: list[RuleError] = []  # what refuses the rule, in the order met

    def problem(self, path: Where, message: str) -> None:
        error = RuleError(path, message)
        if self._strict:
            self.errors.append(error)
        elif self._on_problem is not None:
            self._on_problem(error)

    def fail(self, path: Where, message: str) -> Node:
        """A node that cannot be evaluated at all: noted, and compiled to null so the walk goes on."""
        self.errors.append(RuleError(path, message))
        return Const(None)

    def compile(self, raw: Any, path: Where) -> Node:
        kind = type(raw)
        if kind is dict:
            return self._operation(raw, path)
        if kind is list:
            return self._array(raw, path)
        return Const(raw)

    def _operation(self, raw: dict[str, Any], path: Where) -> Node:
        if len(raw) != 1:
            if "$ref" in raw:
                return self.fail(path, "a {\"$ref\": ...} object must have no other keys")
            self.problem(path, "an object in a rule must have exactly one key, the operator, "
                         "e.g. {\"var\": \"email\"}; data objects are not allowed in targeting")
            return Const(raw)
        ((name, operands),) = raw.items()
        if name == "$ref":
            return self.fail(
                (path, "$ref"),
                f"reference to evaluator {operands!r} was not resolved; define it under \"$evaluators\"",
            )
        compile_operator = OPERATORS.get(name)
        if compile_operator is None:
            return self.fail(path, f"unknown operator {name!r}; expected one of {_OPERATOR_NAMES}")
        operator_path = (path, name)
        return compile_operator(self, _operands(operands, operator_path), operator_path)

    def _array(self, raw: list[Any], path: Where) -> Node:
        if not any(type(item) is dict or type(item) is list for item in raw):
            return Const(raw)  # a literal list (an "in" list of user ids): nothing to compile
        nodes = [self.compile(item, (path, index)) for index, item in enumerate(raw)]
        if all(isinstance(node, Const) for node in nodes):
            return Const([node.value for node in nodes])  # type: ignore[union-attr]
        functions = [as_function(node) for node in nodes]
        return lambda data: [function(data) for function in functions]


def _operands(raw: Any, path: Where) -> list[Arg]:
    """An operator's operands with their paths; a lone operand stands for ``[operand]``."""
    if type(raw) is list:
        return [(item, (path, index)) for index, item in enumerate(raw)]
    return [(raw, path)]


@attrs.frozen
class CompiledRule:
    """A compiled targeting rule and what the compiler learnt about it.

    ``reads_clock`` is False when the rule cannot see ``$flagd.timestamp`` (no ``var`` or
    ``missing`` names it, the whole ``$flagd`` object or the whole context, and no path is
    computed at run time), so its callers may spare reading the clock.
    """

    evaluate: Evaluator
    reads_clock: bool


def compile_rule(rule: Any, **options: Any) -> Evaluator:
    """``compile_targeting(rule, **options).evaluate``: the rule's function alone."""
    return compile_targeting(rule, **options).evaluate


def compile_targeting(
    rule: Any,
    *,
    flag_key: str,
    fractional: str = "v2",
    path: Where = "$.targeting",
    strict: bool = True,
    on_problem: Callable[[RuleError], None] | None = None,
) -> CompiledRule:
    """Compile a targeting rule into ``fn(context) -> value``, and say whether it reads the clock.

    Args:
        rule: the targeting JSON, ``$ref`` already resolved (see ``resolve_refs``). An
            empty object means "no targeting" and compiles to a function answering null.
        flag_key: the flag the rule belongs to (fractional's default bucketing subject).
        fractional: bucketing version, ``"v1"``, ``"v2"`` or ``"v3"`` (see ``fractional``).
        path: JSON path of ``rule``, the prefix of every ``RuleError.path``.
        strict: raise for everything flagd's schema refuses (see module docstring);
            when False, only for rules that cannot be evaluated at all.
        on_problem: with ``strict=False``, called with each schema problem tolerated.

    Returns:
        ``CompiledRule``: ``evaluate`` takes the context (holding ``targetingKey`` and
        ``$flagd``) and returns the rule's value. It may raise for a rule that cannot be
        evaluated against that context; callers report that as PARSE_ERROR.

    Raises:
        RuleError: the rule is refused; ``errors`` says every where and why.
    """
    if fractional not in VERSIONS:
        raise ValueError(f"fractional must be one of {VERSIONS}, got {fractional!r}")
    if type(rule) is not dict:
        raise RuleError(path, f"targeting must be a JSON object (a JSON Logic rule), got {type(rule).__name__}")
    if not rule:
        return CompiledRule(lambda _context: None, reads_clock=False)
    compiler = _RuleCompiler(flag_key, fractional, strict, on_problem)
    try:
        evaluate = as_function(compiler.compile(rule, path))
    except RecursionError:
        raise RuleError(path, "the rule is nested too deeply to compile; flatten it (e.g. chain "
                        "conditions in one \"if\" or \"and\" instead of nesting them)") from None
    if compiler.errors:
        raise RuleError.several(compiler.errors)
    return CompiledRule(evaluate, reads_clock=compiler.reads_clock)
