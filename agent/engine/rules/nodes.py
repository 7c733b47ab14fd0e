"""What a compiled node is, and the shared ways of turning operators into closures.

A compiled node is either a ``Const`` (its value is known at compile time) or a plain
callable ``fn(data) -> value``. Operators look at their arguments' kinds *once*, while
compiling, and build a closure specialised for them: constant arguments are captured as
values, and an operator whose arguments are all constant is folded into a ``Const``.
The request path then runs nothing but these closures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from .errors import Where

if TYPE_CHECKING:
    from collections.abc import Sequence

Evaluator = Callable[[Any], Any]


class Const:
    """A node whose value was decided at compile time."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Const({self.value!r})"


Node = Union[Const, Evaluator]
Arg = tuple[Any, "Where"]  # (raw JSON of an argument, where it is)


class Compiler(Protocol):
    """What an operator's compile function may ask of the compiler."""

    flag_key: str
    fractional: str
    #: Set by an operator that may see ``$flagd.timestamp`` (see ``data.may_read_clock``).
    reads_clock: bool

    def compile(self, raw: Any, path: Where) -> Node:
        """Compile a sub-rule."""

    def problem(self, path: Where, message: str) -> None:
        """Report something flagd's schema refuses (in strict mode, it refuses the rule once compiled)."""


OpCompiler = Callable[[Compiler, "Sequence[Arg]", str], Node]


def as_function(node: Node) -> Evaluator:
    """A node as a callable, wrapping constants."""
    if isinstance(node, Const):
        value = node.value

        def constant(_data: Any) -> Any:
            return value

        return constant
    return node


def all_const(nodes: Sequence[Node]) -> bool:
    """Whether every node is known at compile time."""
    return all(isinstance(node, Const) for node in nodes)


def fold(impl: Callable[..., Any], nodes: Sequence[Node]) -> Node | None:
    """``Const(impl(*values))`` when all nodes are constant and ``impl`` does not fail.

    A failing constant expression is left to fail at evaluation, where any exception
    means "could not evaluate", rather than refusing a rule flagd would load.
    """
    if not all_const(nodes):
        return None
    try:
        return Const(impl(*(node.value for node in nodes)))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - see docstring
        return None


def eager(impl: Callable[..., Any], nodes: Sequence[Node]) -> Node:
    """An operator that evaluates all its arguments, then applies ``impl`` to them.

    Arities 1-3 get closures without ``*args`` packing, and a constant operand is
    captured as a value rather than called.
    """
    folded = fold(impl, nodes)
    if folded is not None:
        return folded
    if len(nodes) == 1:
        (only,) = nodes
        return lambda data: impl(only(data))  # type: ignore[operator]
    if len(nodes) == 2:
        return _binary(impl, *nodes)
    functions = [as_function(node) for node in nodes]
    if len(functions) == 3:
        first, second, third = functions
        return lambda data: impl(first(data), second(data), third(data))
    return lambda data: impl(*[function(data) for function in functions])


def _binary(impl: Callable[[Any, Any], Any], left: Node, right: Node) -> Evaluator:
    if isinstance(right, Const):
        right_value = right.value
        return lambda data: impl(left(data), right_value)  # type: ignore[operator]
    if isinstance(left, Const):
        left_value = left.value
        return lambda data: impl(left_value, right(data))
    return lambda data: impl(left(data), right(data))  # type: ignore[operator]


def is_bare(args: Sequence[Arg], path: Where) -> bool:
    """Whether the operator was given one operand without the array around it."""
    return len(args) == 1 and args[0][1] is path


def expect_operands(
    c: Compiler, args: Sequence[Arg], path: Where, name: str, low: int = 1, high: int | None = None
) -> None:
    """Report (as flagd's schema would) a lone operand, or a count outside ``low..high``."""
    if is_bare(args, path):
        c.problem(path, f"{name} takes an array of operands, e.g. {{\"{name}\": [...]}}")
    elif len(args) < low or (high is not None and len(args) > high):
        if low == high:
            wanted = str(low)
        elif high is None:
            wanted = f"at least {low}"
        else:
            wanted = f"{low} to {high}"
        plural = "" if wanted == "1" else "s"
        c.problem(path, f"{name} takes {wanted} operand{plural}, got {len(args)}")
