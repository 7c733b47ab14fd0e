"""The one compile-time error of the rules package, and JSON-path building for it.

A refused rule must say *where* it is wrong, in the same JSON-path notation the flag-file
loader uses for every other problem, so a person can find the node in their file.
"""

from __future__ import annotations

import re

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*\Z")


class RuleError(Exception):
    """A targeting rule that flagd's schema (or JSON Logic itself) refuses.

    Attributes:
        path: JSON path of the offending node, e.g. ``$.flags.f.targeting.if[0]``.
        message: what is wrong and what is expected instead.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


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
