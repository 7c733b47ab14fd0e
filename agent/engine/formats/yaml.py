"""YAML flag files (``.yaml``/``.yml``), as flagd reads them: the same shapes as JSON.

YAML can say more than JSON (dates, sets, binary, non-string keys, anchors that alias one node
many times); a flag file may hold only what JSON can, so anything else is refused with the path
where it stands. ruamel.yaml is imported only when a YAML file is read: most agents never do.
"""

from __future__ import annotations

import math
from typing import Any

from agent.engine.model import Problem

#: Nesting deeper than this is refused (the rules' own compiler has far tighter limits).
MAX_DEPTH = 200


def is_yaml(source: str) -> bool:
    return source.lower().endswith((".yaml", ".yml"))


class YamlProblem(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def load_yaml(data: bytes, source: str) -> Any:
    """The document in ``data``, as plain JSON values.

    Raises:
        YamlProblem: not valid YAML, or a value JSON cannot hold (with its JSON path).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    loader = YAML(typ="safe", pure=True)
    try:
        raw = loader.load(data)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise YamlProblem("$", f"not valid YAML{where}: {exc.problem or exc}") from None
    except (YAMLError, ValueError) as exc:  # a duplicate key is a ValueError subclass too
        raise YamlProblem("$", f"not valid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except RecursionError:
        raise YamlProblem("$", f"nested deeper than {MAX_DEPTH} levels") from None
    # Aliases share one node many times; written out, 9 levels of ten aliases are a billion
    # values. What a document may expand to is bounded by its own size.
    budget = [max(100_000, 20 * len(data))]
    return _plain(raw, "$", 0, budget)


def _plain(value: Any, path: str, depth: int, budget: list[int]) -> Any:
    if depth > MAX_DEPTH:
        raise YamlProblem(path[:100] + "…", f"nested deeper than {MAX_DEPTH} levels")
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlProblem(path, "the document expands to far more values than it has text for "
                                "(aliases of aliases?); write the values out")
    kind = type(value)
    if value is None or kind in (str, bool, int):
        return value
    if kind is float:
        if math.isnan(value) or math.isinf(value):
            raise YamlProblem(path, f"{value} is not a number JSON can hold")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise YamlProblem(path, f"key {key!r} is a {type(key).__name__}; keys must be strings (quote it)")
            out[key] = _plain(item, f"{path}.{key}", depth + 1, budget)
        return out
    if isinstance(value, list):
        return [_plain(item, f"{path}[{i}]", depth + 1, budget) for i, item in enumerate(value)]
    raise YamlProblem(path, f"a YAML {type(value).__name__} is not a JSON value (quote it to make it a string)")


def problem(source: str, exc: YamlProblem) -> Problem:
    return Problem(source, exc.path, exc.message)
