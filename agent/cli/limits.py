"""The limits of one flag document as command-line options: ``serve`` and ``validate`` alike.

Standard library only (``agent.engine.limits`` is a dataclass module), so the client commands,
which build the same parser, start as fast as before.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.engine.limits import MAX_BYTES, MAX_DEPTH, MAX_FLAGS, MAX_RULE_NODES, MIN_DEPTH, Limits


def _whole_number(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what}, not {value}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds greater than 0, not {text}")
    return value


_positive_int = _whole_number(1, "expected a whole number of at least 1")

#: option, type, metavar, help
DOCUMENT_LIMITS = (
    ("--max-depth", _whole_number(MIN_DEPTH, f"--max-depth takes a whole number of at least {MIN_DEPTH}"), "N",
     f"deepest JSON nesting of a flag file and a set definition (default {MAX_DEPTH})"),
    ("--max-file-bytes", _positive_int, "N", f"largest flag file read (default {MAX_BYTES})"),
    ("--max-flags", _positive_int, "N", f"most flags in one flag file (default {MAX_FLAGS})"),
    ("--max-rule-nodes", _positive_int, "N",
     f"most nodes one targeting rule may expand to with its $refs (default {MAX_RULE_NODES})"),
)


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    for option, kind, metavar, text in DOCUMENT_LIMITS:
        parser.add_argument(option, type=kind, metavar=metavar, help=text)


def document_limits(args: Any) -> Limits:
    """The ``Limits`` the command line asks for (the defaults for what it leaves out)."""
    given = {"max_depth": args.max_depth, "max_bytes": args.max_file_bytes, "max_flags": args.max_flags,
             "max_rule_nodes": args.max_rule_nodes}
    return Limits(**{name: value for name, value in given.items() if value is not None})
