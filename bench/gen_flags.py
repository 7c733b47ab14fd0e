"""Flag files for the benchmarks: N flags, a realistic mix, in the simple or the flagd format.

    .venv/bin/python bench/gen_flags.py --count 10000 --format flagd --out /tmp/flags.json

The mix (by position, so the same N always gives the same file):

* 6 in 10 static: on or off for everyone (simple ``enabled`` without rollout; flagd without
  targeting, some with string or integer variants);
* 4 in 10 targeted: an allow list of users plus a fractional rollout (simple
  ``allowed_users`` + ``rollout_percentage``; flagd ``if``/``in`` over ``targetingKey`` then
  ``fractional``).

Whatever N, every file also holds the flags the scenarios ask for by name: ``bench-static`` and
``bench-targeted`` (allow list + 30% rollout) in the simple format, ``bench-static-flagd``,
``bench-targeted-flagd`` and ``bench-marker`` in the flagd format. ``bench-marker``'s only
variant is the ``--marker`` text, so a reload test can tell the new content from the old in the
answers. The other keys are ``s-NNNNNN`` (simple) and ``d-NNNNNN`` (flagd), so a simple and a
flagd file can be served together without one shadowing the other.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

ALLOWED = [f"user-{i}" for i in range(0, 400, 20)]  # 20 users; user-0, user-20, ... user-380


def simple_flag(i: int) -> dict[str, Any]:
    kind = i % 10
    if kind < 6:
        return {"enabled": kind != 5, "description": f"static flag {i}"}
    return {"enabled": True, "rollout_percentage": 10 + (i % 9) * 10,
            "allowed_users": ALLOWED[: 2 + i % 15]}


def flagd_targeting(users: list[str], percent: int) -> dict[str, Any]:
    return {"if": [
        {"in": [{"var": "targetingKey"}, users]}, "on",
        {"fractional": [["on", percent], ["off", 100 - percent]]},
    ]}


def flagd_flag(i: int) -> dict[str, Any]:
    kind = i % 10
    if kind < 4:
        return {"state": "ENABLED", "variants": {"on": True, "off": False},
                "defaultVariant": "on" if kind else "off"}
    if kind == 4:
        return {"state": "ENABLED", "variants": {"red": "#c0392b", "blue": "#2980b9"},
                "defaultVariant": "blue", "metadata": {"team": "web"}}
    if kind == 5:
        return {"state": "ENABLED", "variants": {"small": 10, "large": 100}, "defaultVariant": "small"}
    return {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
            "targeting": flagd_targeting(ALLOWED[: 2 + i % 15], 10 + (i % 9) * 10)}


def generate(count: int, fmt: str = "simple", marker: str = "m0") -> dict[str, Any]:
    """A flag document with ``count`` flags (the named bench flags included)."""
    flags: dict[str, Any] = {}
    if fmt == "simple":
        flags["bench-static"] = {"enabled": True}
        flags["bench-targeted"] = {"enabled": True, "rollout_percentage": 30, "allowed_users": ALLOWED}
        make, prefix = simple_flag, "s"
    elif fmt == "flagd":
        flags["bench-static-flagd"] = {"state": "ENABLED", "variants": {"on": True, "off": False},
                                       "defaultVariant": "on"}
        flags["bench-targeted-flagd"] = {"state": "ENABLED", "variants": {"on": True, "off": False},
                                         "defaultVariant": "off", "targeting": flagd_targeting(ALLOWED, 30)}
        flags["bench-marker"] = {"state": "ENABLED", "variants": {marker: marker}, "defaultVariant": marker}
        make, prefix = flagd_flag, "d"
    else:
        raise ValueError(f"format must be simple or flagd, not {fmt!r}")
    i = 0
    while len(flags) < count:
        flags[f"{prefix}-{i:06d}"] = make(i)
        i += 1
    if fmt == "flagd":
        return {"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": flags}
    return {"flags": flags}


def encode(count: int, fmt: str = "simple", marker: str = "m0") -> bytes:
    return json.dumps(generate(count, fmt, marker), separators=(",", ":")).encode()


def write(path: str, count: int, fmt: str = "simple", marker: str = "m0") -> None:
    replace_file(path, encode(count, fmt, marker), atomic=False)


def replace_file(path: str, data: bytes, *, atomic: bool) -> None:
    """Put ``data`` at ``path``: renamed over it from a temporary file (``atomic``), or
    rewritten in place, the two ways editors and deploy tools change a flag file."""
    if atomic:
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        with open(path, "wb") as f:
            f.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a benchmark flag file.")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--format", choices=["simple", "flagd"], default="simple")
    parser.add_argument("--marker", default="m0", help="the variant of bench-marker (flagd format)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    write(args.out, args.count, args.format, args.marker)


if __name__ == "__main__":
    main()
