"""What one flag document may hold: the limits every reader and writer of flag files shares.

A flag file is read by the agent at start and on every change, by ``flagsock validate``, and
again by a write (``set``/``delete``), which parses the edited document before replacing the
file. All of them take one :class:`Limits`, so a document one of them accepts the others
accept too, and none of them can be made to nest, grow or expand without bound:

* ``max_depth``: how deeply JSON may nest, counting the document itself as level 1 (a flag's
  variant value in ``{"flags": {"f": {"variants": {"on": VALUE}}}}`` starts at level 5). The
  flagd schemas' own examples nest at most 14 deep; the default leaves room for four times
  that. Every JSON encoder and decoder the agent uses copes with far more (orjson stops at 254
  when writing, Python at its recursion limit), so nothing within the limit can break them.
* ``max_bytes``: the size of a flag document; a file is read no further than one byte past it.
* ``max_flags``: the flags of one document.
* ``max_rule_nodes``: what one targeting rule may expand to with its ``$ref``s, counted in
  rule nodes (operators, operands, literals; a literal list counts once), each use of an
  evaluator counting its whole size. It bounds both the work of compiling and that of
  evaluating a rule, which ``$evaluators`` referring to each other would otherwise make
  exponential in the size of the file.

Standard library only (a dataclass, not attrs): the ``flagsock`` command shows these defaults
in its help, and its client commands must start fast.
"""

from __future__ import annotations

import dataclasses

#: Defaults, also shown by ``flagsock serve --help`` and in docs/reliability.md.
MAX_DEPTH = 64
MAX_BYTES = 16 << 20
MAX_FLAGS = 50_000
MAX_RULE_NODES = 10_000
#: Seconds one source's load may take before it is abandoned (a setting of the reloader).
LOAD_TIMEOUT = 60.0
#: The least ``max_depth``: a flag with an object variant already nests 5 deep.
MIN_DEPTH = 8


@dataclasses.dataclass(frozen=True)
class Limits:
    """The bounds of one flag document (see the module docstring)."""

    max_depth: int = MAX_DEPTH
    max_bytes: int = MAX_BYTES
    max_flags: int = MAX_FLAGS
    max_rule_nodes: int = MAX_RULE_NODES

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            low = MIN_DEPTH if field.name == "max_depth" else 1
            if type(value) is not int or value < low:
                raise ValueError(f"{field.name} must be a whole number of at least {low}, not {value!r}")


DEFAULT_LIMITS = Limits()
