"""The flag file the HTTP tests serve: every value type, targeting, the no-value cases, a set."""

from __future__ import annotations

import copy
from typing import Any

FLAGS: dict[str, Any] = {
    "metadata": {"owner": "tests"},
    "flags": {
        "bool-flag": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "string-flag": {
            "state": "ENABLED", "variants": {"red": "red", "blue": "blue"}, "defaultVariant": "red",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "blue", None]},
        },
        "int-flag": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "two"},
        "float-flag": {"state": "ENABLED", "variants": {"pi": 3.14, "e": 2.72}, "defaultVariant": "pi"},
        "object-flag": {"state": "ENABLED", "variants": {"a": {"x": 1, "y": [1, 2]}}, "defaultVariant": "a"},
        "disabled-flag": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "no-default-flag": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": None},
        "broken-flag": {
            "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on",
            "targeting": {"if": [True, "nonexistent", "on"]},
        },
        "team-flag": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on",
                      "metadata": {"flagSetId": "team-a"}},
    },
}

CLOCK_FLAG = {
    "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
    "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 0]}, "on", "off"]},
}


def flags(**changes: Any) -> dict[str, Any]:
    """The test document with flags replaced (a value of None removes the flag)."""
    doc = copy.deepcopy(FLAGS)
    for key, flag in changes.items():
        key = key.replace("_", "-")
        if flag is None:
            doc["flags"].pop(key, None)
        else:
            doc["flags"][key] = flag
    return doc
