"""The engine's data: compiled flags, evaluation results and load problems.

Everything here is immutable once built. Values handed out by evaluation (variant values,
metadata) are shared by every request, so they are frozen too; the frozen containers subclass
``dict``/``list`` so that ``json`` and ``orjson`` encode them without a ``default`` hook.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import orjson

from protocol.messages import VALUE_TYPES  # noqa: F401 (re-exported: the engine names its types here)


# Reasons, with flagd's meanings.
STATIC = "STATIC"
DEFAULT = "DEFAULT"
TARGETING_MATCH = "TARGETING_MATCH"
DISABLED = "DISABLED"
ERROR = "ERROR"


class _NoDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


#: "No value to report": the flag resolved to no variant and the caller gave no default.
NO_DEFAULT: Any = _NoDefault()


def _read_only(self: Any, *args: Any, **kwargs: Any) -> None:
    raise TypeError(f"{type(self).__name__} is read-only; copy it to change it")


class FrozenDict(dict):
    """A dict that refuses changes; shared safely between requests, encodable as JSON."""

    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list):
    """A list that refuses changes (see :class:`FrozenDict`)."""

    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = _read_only
    clear = sort = reverse = __iadd__ = __imul__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


EMPTY: Mapping[str, Any] = FrozenDict()


def deep_freeze(value: Any) -> Any:
    """Return ``value`` (decoded JSON) with every dict and list made read-only."""
    if isinstance(value, dict):
        if type(value) is FrozenDict:
            return value
        return FrozenDict((k, deep_freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        if type(value) is FrozenList:
            return value
        return FrozenList(deep_freeze(v) for v in value)
    return value


def canonical_json(value: Any) -> bytes:
    """JSON text equal for equal values, whatever the key order (``1``, ``1.0`` and ``true`` differ)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def definition_text(text: bytes) -> bytes:
    """The definition's JSON out of a flag's canonical text ``[kind, definition]``.

    A slice, so a new bytes object of its own size: orjson's output keeps a buffer of 4 KiB or
    more, which ten thousand flags would pin as 40 MB.
    """
    return text[text.index(b",") + 1:-1]


def fingerprint(*parts: bytes) -> bytes:
    """A 16-byte digest of ``parts``: JSON texts and names, none of which holds a NUL byte (JSON
    escapes it), so NUL-separated no two lists of them read alike."""
    return hashlib.blake2b(b"\0".join(parts), digest_size=16).digest()


@attrs.frozen
class Problem:
    """One thing wrong in a flag source: where it is and what rule it breaks.

    ``path`` is a JSON path into the source document (``$.flags.dark_mode.variants``); ``flag``
    is the key of the flag it breaks, or None for a problem of the file as a whole.
    """

    source: str
    path: str
    message: str
    flag: str | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


@attrs.frozen
class Resolution:
    """The answer of one evaluation, with flagd's reasons and OpenFeature's error codes.

    ``value`` is :data:`NO_DEFAULT` when the flag resolved to no variant (DISABLED, no default
    variant, an error) and the caller gave no default.
    """

    key: str
    value: Any
    variant: str | None
    reason: str
    error_code: str | None = None
    error_message: str | None = None
    metadata: Mapping[str, Any] = EMPTY


#: ``resolver(data, expected_type, now) -> Resolution`` for a flag whose answer depends on
#: the context; None means the value chosen does not have ``expected_type`` (evaluate() then
#: builds the TYPE_MISMATCH answer). ``expected_type`` is already known to be valid. ``data``
#: is the request's context as :func:`agent.engine.tables.request_data` prepares it, shared by
#: every flag the request evaluates: a resolver may set its ``$flagd`` entry and nothing else.
Resolver = Callable[[Any, "str | None", "int | None"], "Resolution | None"]


@attrs.frozen
class CompiledFlag:
    """One flag, validated and compiled for evaluation.

    Two CompiledFlags are equal when their ``fingerprint`` is: a digest of the flag's effective
    definition (``$ref``s resolved, metadata merged, the bucketing version of its rules), so a
    reload can tell which flags really changed.

    ``static`` holds the finished :class:`Resolution` for every expected type (None for a type
    the value does not have) when the answer does not depend on the context (no targeting, disabled, broken); otherwise ``resolver``
    computes it.
    """

    key: str
    value_type: str | None
    variants: Mapping[str, Any] = attrs.field(eq=False)
    default_variant: str | None = attrs.field(eq=False)
    metadata: Mapping[str, Any] = attrs.field(eq=False)
    enabled: bool = attrs.field(eq=False)
    source: str = attrs.field(eq=False)
    format: str = attrs.field(eq=False)
    fingerprint: bytes = attrs.field(repr=False)
    static: Mapping[str | None, Resolution | None] | None = attrs.field(eq=False, repr=False)
    resolver: Resolver | None = attrs.field(eq=False, repr=False, default=None)
    problems: tuple[Problem, ...] = attrs.field(eq=False, default=())
    #: The flag as written, as canonical JSON text (see :func:`definition_text`): what the
    #: change history records and what ``explain`` reads. Bytes, not the decoded object: a few
    #: hundred bytes a flag rather than a tree of dicts.
    definition: bytes = attrs.field(eq=False, repr=False, default=b"null")
    #: A targeted flagd flag's rule for ``explain``: (its canonical JSON, or b"" when that is the
    #: definition's own ``targeting``; the bucketing version; the document's ``$evaluators`` when
    #: the rule refers to them, else None). The evaluators are the one mapping all the document's
    #: flags share: a rule is expanded only when it is explained (expanded for every flag at load,
    #: references can cost the flag count times the rule-node limit in memory).
    rule: tuple[bytes, str, Mapping[str, Any] | None] | None = attrs.field(eq=False, repr=False, default=None)
    #: Whether the answer can change with the clock (a rule that reads ``$flagd.timestamp``):
    #: the HTTP frontend's ETag must then cover the answer itself.
    reads_clock: bool = attrs.field(eq=False, default=False)

    @property
    def broken(self) -> bool:
        """True for a flag loaded under ``invalid_flags="isolate"`` that answers PARSE_ERROR."""
        return bool(self.problems)


@attrs.frozen
class ParsedSource:
    """One flag source, parsed: its compiled flags and what was wrong with it."""

    source: str
    format: str
    flags: Mapping[str, CompiledFlag]
    problems: tuple[Problem, ...]
    document: Any = attrs.field(repr=False, eq=False)
    metadata: Mapping[str, Any] = EMPTY
    #: Per flag key, the flag's JSON exactly as read (type-exact: ``true`` is not ``1``), and
    #: what every flag of the file depends on (options, file metadata, ``$evaluators``): a later
    #: parse reuses a compiled flag whose both are unchanged instead of compiling it again.
    signatures: Mapping[str, bytes] = attrs.field(default=EMPTY, repr=False, eq=False)
    context: bytes = attrs.field(default=b"", repr=False, eq=False)
