"""``$evaluators``: rules a flag file defines once and refers to by ``{"$ref": "name"}``.

An evaluator is compiled once per document, and every rule that refers to it (a flag's
targeting, or another evaluator) calls the same closure. Expanding references into each rule
before compiling, as flagd does, costs time and memory exponential in the size of the file when
evaluators refer to each other (``e2 = e1 or e1``, ``e3 = e2 or e2``...: 18 such lines made
a 1 KB file take 90 s and 550 MB). Compiled once, each costs its own size; what a rule would
expand to is still counted (``Shared.nodes``), since evaluating it does that much work, and is
bounded by the compiler's ``max_nodes``.

Evaluators are compiled in dependency order by an explicit stack, not by recursion, so a long
chain of references cannot exhaust Python's stack; a cycle (``a`` -> ``b`` -> ``a``) is refused.
An evaluator whose rule buckets by the flag key (a ``fractional`` without its own bucketing
value) cannot be shared between flags: it is compiled once per flag that uses it.

``resolve_refs`` (a copy of a rule with its references expanded) remains for tools and tests
that want the expanded JSON; it refuses to build more than ``max_nodes`` nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Callable, Mapping

import attrs
import orjson

from .compiler import compile_node
from .errors import RuleError, Where
from .nodes import Const, Node

EVALUATORS_PATH: Where = ("$", "$evaluators")


@attrs.frozen
class Shared:
    """One compiled evaluator, as every reference to it sees it."""

    node: Node
    #: Its size with its own references expanded, and how deep it then nests.
    nodes: int
    depth: int
    reads_clock: bool
    uses_flag_key: bool
    #: Identifies the rule and every evaluator it refers to (for fingerprints).
    digest: bytes
    #: Schema problems tolerated while compiling it (``strict=False`` only).
    tolerated: tuple[RuleError, ...] = ()


class SharedEvaluators:
    """The ``$evaluators`` of one document, compiled on first use and then shared.

    Args:
        raw: name -> rule, as the document has them (each an object).
        fractional, strict: as for ``compile_targeting``; the same for the whole document.
        max_nodes, max_depth: the bounds of one evaluator, its references expanded.
    """

    def __init__(self, raw: Mapping[str, Any], *, fractional: str = "v2", strict: bool = True,
                 max_nodes: int | None = None, max_depth: int | None = None) -> None:
        self.raw = raw
        self.fractional = fractional
        self.strict = strict
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        #: (name, None) for an evaluator any flag may share, (name, flag key) for one that
        #: captured its flag's key; a RuleError for one that cannot be compiled.
        self._done: dict[tuple[str, str | None], Shared | RuleError] = {}

    def use(self, name: Any, path: Where, flag_key: str) -> Shared:
        """The evaluator ``name`` for flag ``flag_key``; ``path`` is where the reference is.

        Raises:
            RuleError: no such evaluator, or it (or one it refers to) cannot be compiled.
        """
        if type(name) is not str:
            raise RuleError(path, f"a reference must name an evaluator as a string, got {name!r}")
        if name not in self.raw:
            known = ", ".join(sorted(self.raw)) or "none are defined"
            raise RuleError(path, f"no evaluator named {name!r} under \"$evaluators\" (defined: {known})")
        found = self._found(name, flag_key)
        if found is None:
            self._build(name, flag_key)
            found = self._found(name, flag_key)
        if isinstance(found, RuleError):
            raise RuleError.several(found.errors)
        assert found is not None
        return found

    def _found(self, name: str, flag_key: str) -> Shared | RuleError | None:
        done = self._done
        return done.get((name, None)) or done.get((name, flag_key))

    def _build(self, name: str, flag_key: str) -> None:
        """Compile ``name`` and whatever it refers to that is not compiled yet, leaves first."""
        stack: list[tuple[str, Iterator[tuple[str, Where]]]] = [(name, references(self.raw[name], name))]
        chain = {name: None}  # the names on the stack, in order (a dict: insertion-ordered, fast "in")
        while stack:
            current, pending = stack[-1]
            for ref, where in pending:
                if ref not in self.raw or self._found(ref, flag_key) is not None:
                    continue  # an unknown name is the compiler's to refuse, where it is used
                if ref in chain:
                    names = list(chain)
                    cycle = " -> ".join((*names[names.index(ref):], ref))
                    self._done[(ref, None)] = RuleError(where, f"evaluator references form a cycle: {cycle}")
                    continue
                stack.append((ref, references(self.raw[ref], ref)))
                chain[ref] = None
                break
            else:
                stack.pop()
                del chain[current]
                self._compile(current, flag_key)

    def _compile(self, name: str, flag_key: str) -> None:
        rule = self.raw[name]
        path = (EVALUATORS_PATH, name)
        tolerated: list[RuleError] = []
        try:
            if type(rule) is not dict:
                raise RuleError(path, "an evaluator must be a targeting rule (an object)")
            if not rule:
                node, facts = Const(None), None  # "no rule": answers null, like empty targeting
            else:
                node, facts = compile_node(rule, flag_key=flag_key, fractional=self.fractional, path=path,
                                           strict=self.strict, on_problem=tolerated.append, evaluators=self,
                                           max_nodes=self.max_nodes, max_depth=self.max_depth)
        except RuleError as exc:
            self._done[(name, None)] = exc
            return
        digest = hashlib.blake2b(orjson.dumps(rule, option=orjson.OPT_SORT_KEYS), digest_size=16)
        for ref_digest in facts.ref_digests if facts else ():
            digest.update(ref_digest)
        uses_flag_key = bool(facts and facts.uses_flag_key)
        self._done[(name, flag_key if uses_flag_key else None)] = Shared(
            node=node, nodes=facts.nodes if facts else 1, depth=max(json_depth(rule), facts.depth if facts else 0),
            reads_clock=bool(facts and facts.reads_clock), uses_flag_key=uses_flag_key,
            digest=digest.digest(), tolerated=tuple(tolerated),
        )


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``{}`` and ``[]`` are 1)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node.values())
        elif type(node) is list:
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node)
    return deepest


def references(rule: Any, name: str) -> Iterator[tuple[str, Where]]:
    """The evaluators ``rule`` (evaluator ``name``) refers to by a well-formed ``$ref``, with
    where; malformed references are left for the compiler to refuse."""
    stack: list[tuple[Any, Where]] = [(rule, (EVALUATORS_PATH, name))]
    while stack:
        node, where = stack.pop()
        if type(node) is dict:
            ref = node.get("$ref")
            if len(node) == 1 and type(ref) is str:
                yield ref, (where, "$ref")
                continue
            stack.extend((v, (where, k)) for k, v in reversed(node.items()))
        elif type(node) is list:
            stack.extend((v, (where, i)) for i, v in reversed(list(enumerate(node))))


def resolve_refs(
    rule: Any, evaluators: Mapping[str, Any], path: Where = "$.targeting",
    on_error: Callable[[RuleError], None] | None = None, *, max_nodes: int = 100_000,
) -> Any:
    """A copy of ``rule`` with every ``{"$ref": name}`` replaced by ``evaluators[name]``.

    Every reference is followed, so all the broken ones are found in one call.

    Args:
        on_error: when given, each broken reference is reported to it and replaced by null,
            and the copy is returned (for a caller that goes on to check the rest of the rule).
        max_nodes: the largest copy made: evaluators that refer to each other can make it
            exponential in the size of the file.

    Raises:
        RuleError: (without ``on_error``) some reference names no evaluator, is not a string,
            or is part of a cycle; ``errors`` lists each. Always: the copy would hold more
            than ``max_nodes`` nodes.
    """
    errors: list[RuleError] = []
    budget = [max_nodes]

    def count() -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise RuleError(path, f"expanding the references of this rule makes more than {max_nodes:,} nodes")

    try:
        resolved = _resolve(rule, evaluators, path, (), errors.append, count)
    except RecursionError:
        raise RuleError(path, "the rule is nested too deeply to resolve its references") from None
    if errors and on_error is None:
        raise RuleError.several(errors)
    for error in errors:
        on_error(error)  # type: ignore[misc]
    return resolved


def _resolve(rule: Any, evaluators: Mapping[str, Any], path: Where, chain: tuple[str, ...],
             broken: Callable[[RuleError], None], count: Callable[[], None]) -> Any:
    kind = type(rule)
    count()
    if kind is list:
        return [_resolve(item, evaluators, (path, index), chain, broken, count) for index, item in enumerate(rule)]
    if kind is not dict:
        return rule
    if "$ref" not in rule:
        return {key: _resolve(value, evaluators, (path, key), chain, broken, count) for key, value in rule.items()}
    ref_path = (path, "$ref")
    name = rule["$ref"]
    if len(rule) != 1:
        broken(RuleError(path, "a {\"$ref\": ...} object must have no other keys"))
    elif type(name) is not str:
        broken(RuleError(ref_path, f"a reference must name an evaluator as a string, got {name!r}"))
    elif name not in evaluators:
        known = ", ".join(sorted(evaluators)) or "none are defined"
        broken(RuleError(ref_path, f"no evaluator named {name!r} under \"$evaluators\" (defined: {known})"))
    elif name in chain:
        broken(RuleError(ref_path, f"evaluator references form a cycle: {' -> '.join((*chain, name))}"))
    else:
        return _resolve(evaluators[name], evaluators, (EVALUATORS_PATH, name), (*chain, name), broken, count)
    return None
