"""The ``set`` and ``delete`` requests: their shape checked, their simple values validated.

What a flag definition may hold is not decided here: the edited file goes through the same
parser as any flag file, so a request cannot get past a check that a file would fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from agent.writes.docedit import FLAGD_KEYS, SIMPLE_FIELDS, SIMPLE_KEYS, SetChange, apply_delete, apply_set
from protocol.errors import BadRequest, InvalidFlag
from protocol.messages import json_type

_SET_FIELDS = frozenset({"op", "id", "flag", "definition", "if_revision", *SIMPLE_FIELDS})
_DELETE_FIELDS = frozenset({"op", "id", "flag", "if_revision"})


def _check_fields(req: dict, allowed: frozenset[str]) -> None:
    unknown = sorted(k for k in req if k not in allowed)
    if unknown:
        takes = ", ".join(sorted(allowed - {"op", "id"}))
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"for op {req['op']!r}; it takes {takes}")


def _flag(req: dict) -> str:
    flag = req.get("flag")
    if "flag" not in req:
        raise BadRequest(f"{req['op']} needs \"flag\": the key of the flag")
    if type(flag) is not str or not flag:
        raise BadRequest(f"\"flag\" must be a non-empty string, not {json_type(flag)}")
    return flag


def _if_revision(req: dict) -> int | None:
    value = req.get("if_revision")
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise BadRequest(f"\"if_revision\" must be a revision number (a non-negative integer), not {json.dumps(value)}")
    return value


def parse_set(req: dict) -> tuple[SetChange, int | None]:
    """Check a ``set`` request's shape and simple values; the flag itself is checked by the parser."""
    _check_fields(req, _SET_FIELDS)
    flag = _flag(req)
    given = [f for f in SIMPLE_FIELDS if f in req]
    if "definition" in req:
        if given:
            raise BadRequest(f"give either \"definition\" or the simple fields, not both (got definition and {', '.join(given)})")
        definition = req["definition"]
        if type(definition) is not dict:
            raise InvalidFlag(f"\"definition\" must be a flagd flag object, not {json_type(definition)}")
        if definition.keys() & SIMPLE_KEYS and not definition.keys() & FLAGD_KEYS:
            raise InvalidFlag("\"definition\" looks like a simple-format flag; send enabled / rollout_percentage / "
                              "allowed_users as fields of the request instead, or give a flagd flag with state and variants")
        if "key" in definition and definition["key"] != flag:
            raise InvalidFlag(f"definition.key {json.dumps(definition['key'])} differs from \"flag\" {flag!r}; leave it out")
        return SetChange(flag, definition=definition), _if_revision(req)
    if not given:
        raise BadRequest("set needs \"definition\" (a flagd flag object) or \"enabled\" (with optional "
                         "rollout_percentage and allowed_users)")
    if "enabled" not in req:
        raise BadRequest("\"enabled\" is required with the simple fields (true or false)")
    simple: dict[str, Any] = {}
    if type(req["enabled"]) is not bool:
        raise InvalidFlag(f"enabled must be true or false, not {json.dumps(req['enabled'])}")
    simple["enabled"] = req["enabled"]
    if "rollout_percentage" in req:
        pct = req["rollout_percentage"]
        if pct is not None and (type(pct) not in (int, float) or not 0 <= pct <= 100):
            raise InvalidFlag(f"rollout_percentage must be a number from 0 to 100 or null, not {json.dumps(pct)}")
        simple["rollout_percentage"] = pct
    if "allowed_users" in req:
        users = req["allowed_users"]
        if type(users) is not list or not all(type(u) is str for u in users):
            raise InvalidFlag("allowed_users must be an array of user ids (strings)"
                              + ("" if type(users) is list else f", not {json_type(users)}"))
        simple["allowed_users"] = users
    return SetChange(flag, simple=simple), _if_revision(req)


def parse_delete(req: dict) -> tuple[str, int | None]:
    _check_fields(req, _DELETE_FIELDS)
    return _flag(req), _if_revision(req)


Edit = Callable[[dict], dict]


def parse_change(op: str, req: dict, *, fractional: str, where: str) -> tuple[str, int | None, Edit]:
    """A ``set`` or ``delete`` request as (flag, if_revision, the edit of a flag document).

    Every writer (a file, an etcd prefix) applies the same edit to the document it holds, so a
    change means the same wherever it is written.
    """
    if op == "set":
        change, if_revision = parse_set(req)
        return change.flag, if_revision, lambda doc: apply_set(doc, change, fractional=fractional, where=where)
    flag, if_revision = parse_delete(req)
    return flag, if_revision, lambda doc: apply_delete(doc, flag, where=where)


def check_not_overridden(sources: Sequence[Any], target: str, flag: str) -> None:
    """Refuse a change of ``flag`` in ``target`` that a later source would hide (it wins on a key)."""
    names = [s.path for s in sources]
    for later in sources[names.index(target) + 1:] if target in names else ():
        if flag in later.flags:
            raise InvalidFlag(f"flag {flag!r} is served from {later.path}, which overrides {target} "
                              "(where this agent writes); a change there would not be served")
