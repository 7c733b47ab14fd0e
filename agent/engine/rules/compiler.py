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

from typing import Any, Callable, Mapping, Protocol

import attrs

from . import arithmetic, arrays, data, logic, strings
from .errors import RuleError, Where, render
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
    """One compilation: the flag it is for, the options, where problems go, and what the rule
    was found to cost: ``nodes``, with what its references add, and ``deepest``, the level its
    references reach (a rule's own nesting is the document's, checked when it was decoded)."""

    def __init__(
        self, flag_key: str, fractional: str, strict: bool, on_problem: Callable[[RuleError], None] | None,
        *, root: Where = "$", evaluators: References | None = None, max_nodes: int | None = None,
        max_depth: int | None = None,
    ) -> None:
        self.flag_key = flag_key
        self.fractional = fractional
        self._strict = strict
        self._on_problem = on_problem
        self.reads_clock = False
        self.errors: list[RuleError] = []  # what refuses the rule, in the order met
        #: Set by an operator that captured ``flag_key`` (so the rule cannot serve another flag).
        self.uses_flag_key = False
        self.root = root
        self.evaluators = evaluators
        self.max_nodes = max_nodes
        self._node_limit: float = max_nodes if max_nodes is not None else float("inf")
        self.max_depth = max_depth
        self.nodes = 0
        self.deepest = 0
        #: The digest of each evaluator referred to, in order (part of the flag's fingerprint).
        #: This and the rest below are only needed for a rule with references.
        self.ref_digests: list[bytes] = []
        self._largest: tuple[int, str, Where] | None = None
        self._reported: set[tuple[str, str]] | None = None
        #: Where a broken reference stands (compiled to null): what an operator says of that
        #: null spot is left out, the reference being the problem there.
        self._broken_refs: set[str] | None = None

    def compile_root(self, rule: Any, path: Where) -> Node:
        """Compile ``rule`` whole; RuleError listing every problem of it, if it has any."""
        try:
            node = self.compile(rule, path)
        except RecursionError:
            raise RuleError(path, "the rule is nested too deeply to compile; flatten it (e.g. chain "
                            "conditions in one \"if\" or \"and\" instead of nesting them)") from None
        if self.errors:
            raise RuleError.several(self._reported_errors())
        return node

    def _reported_errors(self) -> list[RuleError]:
        spots = self._broken_refs
        if not spots:
            return self.errors
        return [e for e in self.errors if e.path not in spots]

    def finish(self, evaluate: Evaluator) -> CompiledRule:
        return CompiledRule(evaluate, self.reads_clock, self.nodes, self.deepest, self.uses_flag_key,
                            tuple(self.ref_digests) if self.ref_digests else ())

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
        self.nodes += 1
        if self.nodes > self._node_limit:
            self._too_large()
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
            return self._reference(operands, path)
        compile_operator = OPERATORS.get(name)
        if compile_operator is None:
            return self.fail(path, f"unknown operator {name!r}; expected one of {_OPERATOR_NAMES}")
        operator_path = (path, name)
        return compile_operator(self, _operands(operands, operator_path), operator_path)

    def _reference(self, name: Any, path: Where) -> Node:
        """``{"$ref": name}``: the evaluator's shared closure, with all it costs and reads.

        A reference that cannot be followed is noted (with every problem of the evaluator it
        names) and stands as null while the rest of the rule is checked. A rule past a limit
        is refused at once: there is no point in checking more of it.
        """
        ref_path = (path, "$ref")
        try:
            if self.evaluators is None:
                raise RuleError(ref_path, f"reference to evaluator {name!r} was not resolved; define it under "
                                          "\"$evaluators\"")
            shared = self.evaluators.use(name, ref_path, self.flag_key)
        except RuleError as exc:
            self.errors.extend(exc.errors)
            self._broken_refs = self._broken_refs or set()
            self._broken_refs.add(render(path))
            return Const(None)
        self.nodes += shared.nodes - 1  # the {"$ref"} object stands for the evaluator's nodes
        if self._largest is None or shared.nodes > self._largest[0]:
            self._largest = (shared.nodes, name, path)
        if self.nodes > self._node_limit:
            self._too_large()
        level = _steps(path) - _steps(self.root) + 1  # of the {"$ref"} object, the rule being level 1
        self.deepest = max(self.deepest, level - 1 + shared.depth)
        if self.max_depth is not None and self.deepest > self.max_depth:
            self._refuse(f"with the evaluators it refers to, this rule nests {self.deepest} levels deep, more "
                         f"than the limit of {self.max_depth} (the max-depth setting)")
        self.reads_clock = self.reads_clock or shared.reads_clock
        self.uses_flag_key = self.uses_flag_key or shared.uses_flag_key
        self.ref_digests.append(shared.digest)
        for error in shared.tolerated:  # reported again, now against the flag that uses it
            reported = self._reported = self._reported or set()
            if (error.path, error.message) not in reported and self._on_problem is not None:
                reported.add((error.path, error.message))
                self._on_problem(error)
        return shared.node

    def _too_large(self) -> None:
        message = (f"this rule expands to more than {self.max_nodes:,} nodes (the limit, the max-rule-nodes "
                   "setting)")
        if self._largest is not None:
            nodes, name, path = self._largest
            message += f"; the largest part is evaluator {name!r} ({nodes:,} nodes) at {render(path)}"
        self._refuse(message + "; make it smaller or refer to fewer evaluators")

    def _refuse(self, message: str) -> None:
        """Refuse the rule now, with what was found so far and ``message`` about the whole of it."""
        raise RuleError.several([*self._reported_errors(), RuleError(self.root, message)])

    def _array(self, raw: list[Any], path: Where) -> Node:
        if not any(type(item) is dict or type(item) is list for item in raw):
            return Const(raw)  # a literal list (an "in" list of user ids): nothing to compile
        nodes = [self.compile(item, (path, index)) for index, item in enumerate(raw)]
        if all(isinstance(node, Const) for node in nodes):
            return Const([node.value for node in nodes])  # type: ignore[union-attr]
        functions = [as_function(node) for node in nodes]
        return lambda data: [function(data) for function in functions]


class References(Protocol):
    """What the compiler asks of a document's ``$evaluators`` (see ``refs.SharedEvaluators``)."""

    def use(self, name: Any, path: Where, flag_key: str) -> Any:
        """The compiled evaluator ``name`` (a ``refs.Shared``); RuleError when there is none."""


def _steps(where: Where) -> int:
    """How many keys and indexes ``where`` goes down from its text (its JSON nesting)."""
    steps = 0
    while type(where) is tuple:
        where = where[0]
        steps += 1
    return steps


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
    computed at run time), so its callers may spare reading the clock. ``nodes`` is its size
    with its references expanded, ``depth`` the deepest level its references reach (0 without
    any); ``ref_digests`` identify the evaluators it refers to (what they are, not only names).
    """

    evaluate: Evaluator
    reads_clock: bool
    nodes: int = 0
    depth: int = 0
    uses_flag_key: bool = False
    ref_digests: tuple[bytes, ...] = ()


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
    evaluators: References | None = None,
    max_nodes: int | None = None,
    max_depth: int | None = None,
) -> CompiledRule:
    """Compile a targeting rule into ``fn(context) -> value``, and say whether it reads the clock.

    Args:
        rule: the targeting JSON. An empty object means "no targeting" and compiles to a
            function answering null.
        flag_key: the flag the rule belongs to (fractional's default bucketing subject).
        fractional: bucketing version, ``"v1"``, ``"v2"`` or ``"v3"`` (see ``fractional``).
        path: JSON path of ``rule``, the prefix of every ``RuleError.path``.
        strict: raise for everything flagd's schema refuses (see module docstring);
            when False, only for rules that cannot be evaluated at all.
        on_problem: with ``strict=False``, called with each schema problem tolerated.
        evaluators: the document's ``$evaluators``, compiled once and shared
            (``refs.SharedEvaluators``); without them a ``{"$ref": ...}`` is refused.
        max_nodes: the most nodes the rule may expand to, its references counted whole.
        max_depth: the deepest the rule may nest with its references expanded.

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
    compiler = _RuleCompiler(flag_key, fractional, strict, on_problem, root=path, evaluators=evaluators,
                             max_nodes=max_nodes, max_depth=max_depth)
    return compiler.finish(as_function(compiler.compile_root(rule, path)))


def compile_node(rule: Any, *, flag_key: str, fractional: str, path: Where, strict: bool,
                 on_problem: Callable[[RuleError], None] | None, evaluators: References | None,
                 max_nodes: int | None, max_depth: int | None) -> tuple[Node, CompiledRule]:
    """``compile_targeting`` without its checks of ``rule``, keeping a constant as a ``Const``
    (an evaluator's node is shared, and its referrers fold constants). The CompiledRule's
    ``evaluate`` is the node as a function."""
    compiler = _RuleCompiler(flag_key, fractional, strict, on_problem, root=path, evaluators=evaluators,
                             max_nodes=max_nodes, max_depth=max_depth)
    node = compiler.compile_root(rule, path)
    return node, compiler.finish(as_function(node))
