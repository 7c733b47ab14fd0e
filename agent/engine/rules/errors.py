"""The one compile-time error of the rules package, and JSON-path building for it.

A refused rule must say *where* it is wrong, in the same JSON-path notation the flag-file
loader uses for every other problem, so a person can find the node in their file.
"""

from __future__ import annotations

import re
from typing import Sequence, Union

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*\Z")


class RuleError(Exception):
    """A targeting rule that flagd's schema (or JSON Logic itself) refuses.

    A rule is compiled whole before it is refused, so one error may stand for several, each
    at its own node: ``errors`` lists them all (a lone error lists itself); ``path`` and
    ``message`` are the first one's, for callers that report one line.

    Attributes:
        path: JSON path of the offending node, e.g. ``$.flags.f.targeting.if[0]``.
        message: what is wrong and what is expected instead.
        errors: every problem found, in the order met, each once.
    """

    def __init__(self, path: Where, message: str) -> None:
        path = render(path)
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.errors: tuple[RuleError, ...] = (self,)

    @classmethod
    def several(cls, errors: Sequence[RuleError]) -> RuleError:
        """One error to raise for all of ``errors`` (not empty); the same problem twice counts once.

        A shared ``$evaluators`` rule used twice by a flag is compiled twice, with the same paths.
        """
        first_of: dict[tuple[str, str], RuleError] = {}
        for error in errors:
            first_of.setdefault((error.path, error.message), error)
        unique = list(first_of.values())
        if len(unique) == 1:
            return unique[0]
        combined = cls(unique[0].path, unique[0].message)
        combined.args = ("; ".join(str(e) for e in unique),)
        combined.errors = tuple(unique)
        return combined


#: Where a node of a rule is: the JSON path of the rule itself (text), or ``(parent, key)``
#: where ``key`` is an object key or an array index. The compiler makes one for every node it
#: visits, so it is a tuple (cheap); it becomes text only for a problem (:func:`render`).
Where = Union[str, tuple["Where", Union[str, int]]]


def render(where: Where) -> str:
    """The JSON path of ``where``: ``(("$.targeting", "if"), 0)`` -> ``$.targeting.if[0]``."""
    steps = []
    while type(where) is tuple:
        where, step = where
        steps.append(step)
    path = where
    for step in reversed(steps):
        path = index_path(path, step) if type(step) is int else child_path(path, step)
    return path


def child_path(path: str, key: str) -> str:
    """The path of ``key`` inside the object at ``path``.

    Operator names such as ``==`` are not identifiers, so they are written in the
    bracket form (``$.targeting['==']``) that JSONPath readers understand.
    """
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}"
    quoted = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{path}['{quoted}']"


def index_path(path: str, index: int) -> str:
    """The path of item ``index`` of the array at ``path``."""
    return f"{path}[{index}]"
