"""Which format a flag, and a whole flag document, is in: decided here and nowhere else.

The loader reports a document's format in ``health`` and compiles each flag by its kind; the
writer keeps a document in its format when it adds a flag; a ``set`` request is refused when
its ``definition`` is a simple flag in disguise. All three ask these two functions, so they
cannot disagree about a document (issue 12: ``{"$evaluators": {}, "flags": {...simple...}}``
was simple to the loader and flagd to the writer).

* a flag (an entry of a ``flags`` map or array) is ``simple`` when it has a simple key
  (``enabled``, ``rollout_percentage``, ``rollout``, ``allowed_users``) and no flagd one
  (``state``, ``variants``, ``defaultVariant``, ``targeting``); anything else is ``flagd``;
* a document without ``flags`` is ``simple-flat`` (flags at the top level);
* one whose ``flags`` is an array, or that defines ``$evaluators`` (shared targeting rules,
  a flagd feature), or that holds a flagd flag, is ``flagd``;
* one whose ``flags`` map holds only simple flags is ``simple``; so is an empty map, unless
  the document's ``$schema`` names flagd's. An empty ``$evaluators`` object defines nothing and
  does not make a document flagd.
"""

from __future__ import annotations

from typing import Any

SIMPLE_KEYS = frozenset({"enabled", "rollout_percentage", "rollout", "allowed_users"})
FLAGD_KEYS = frozenset({"state", "variants", "defaultVariant", "targeting"})

FLAGD = "flagd"
SIMPLE = "simple"
SIMPLE_FLAT = "simple-flat"


def flag_kind(raw: Any) -> str:
    """``"simple"`` or ``"flagd"``: how a flag of a ``flags`` container is read."""
    if type(raw) is not dict or "variants" in raw:  # the common case first: a flagd flag
        return FLAGD
    if raw.keys() & SIMPLE_KEYS and not raw.keys() & FLAGD_KEYS:
        return SIMPLE
    return FLAGD


def document_format(doc: dict) -> str:
    """``"flagd"``, ``"simple"`` or ``"simple-flat"`` (see the module docstring).

    A malformed ``flags`` member (neither an object nor an array) is ``flagd``: validation
    says what is wrong with it.
    """
    if "flags" not in doc:
        return SIMPLE_FLAT
    flags = doc["flags"]
    evaluators = doc.get("$evaluators")
    if type(flags) is not dict or (type(evaluators) is dict and evaluators):
        return FLAGD
    if not flags:
        return FLAGD if "flagd" in str(doc.get("$schema", "")) else SIMPLE
    for raw in flags.values():
        if flag_kind(raw) == FLAGD:
            return FLAGD
    return SIMPLE
