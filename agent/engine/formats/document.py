"""Bytes of one flag file -> validated, compiled flags (:class:`~agent.engine.model.ParsedSource`).

Formats, detected per document:

* ``flagd``: ``{"flags": {KEY: {"state", "variants", "defaultVariant", "targeting", "metadata"}}}``
  or ``"flags"`` as an array of such objects each with a ``"key"`` (flagd's own extension), with
  file ``metadata`` and ``$evaluators`` referenced by ``{"$ref": NAME}``;
* ``simple``: ``{"flags": {KEY: {"enabled", "rollout_percentage", "allowed_users", "name",
  "description"}}}`` (see :mod:`agent.engine.formats.simple`);
* ``simple-flat``: the same flags at the top level, ``{KEY: {"enabled": true, "rollout": 50}}``.

Inside a ``flags`` map each flag is read by its own keys: one with ``state``/``variants``/
``defaultVariant``/``targeting`` is a flagd flag, one with only simple keys (``enabled``,
``rollout_percentage``, ``rollout``, ``allowed_users``) is a simple flag. So a simple file can
take a flagd flag (what ``set`` with a ``definition`` writes) and vice versa; such a mixed
document reports ``format == "flagd"``, an all-simple one ``"simple"``. Both decisions are
:mod:`agent.engine.formats.detect`'s, which the writer asks too.

Problems of one flag break that flag only: ``invalid_flags="reject"`` refuses the file listing
every one, ``"isolate"`` loads the rest and the broken flags answer PARSE_ERROR. Under
``isolate`` a targeting rule that flagd's schema refuses but flagd's evaluators still serve (a
``sem_ver`` with an unknown operator, a negative weight) is served as flagd serves it, and
reported in ``problems`` all the same. A file that is
empty, not JSON (or YAML), not an object, ``{}``, not recognisably a flag file, beyond the
:class:`~agent.engine.limits.Limits` (size, depth, flag count, rule expansion), holding a
duplicate key or an integer that JSON decoding would round (:mod:`agent.engine.formats.decoding`),
or whose own ``metadata`` / ``$evaluators`` / ``flags`` member is malformed is always refused.

Every problem is found before a file is refused (each flag, and within a flag each problem that
does not hang on another), so one run of ``flagsock validate`` tells an author all there is to fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from hashlib import blake2b
from types import MappingProxyType
from typing import Any, Protocol

import orjson

from agent.engine.formats.decoding import FlagFileError, decode_document
from agent.engine.formats.detect import SIMPLE_KEYS, document_format, flag_kind
from agent.engine.formats.flagd import FlagdCompiler
from agent.engine.formats.simple import compile_simple_flag
from agent.engine.limits import DEFAULT_LIMITS, Limits
from agent.engine.model import (
    EMPTY,
    CompiledFlag,
    ParsedSource,
    Problem,
    canonical_json,
    definition_text,
    fingerprint,
)
from agent.engine.rules.errors import Where, render
from agent.engine.rules.fractional import VERSIONS as FRACTIONAL_VERSIONS
from agent.engine.schema import FileSpec, json_type, structure
from agent.engine.tables import broken_table

__all__ = ["FlagFileError", "Limits", "ParsedSource", "Problem", "parse_flag_document"]

_NOT_A_FLAG_FILE = (
    'not a flag file: expected a "flags" member (flagd or simple format) or top-level flags '
    'such as {"dark_mode": {"enabled": true}}'
)
_NO_FLAGS = (
    'no flags: a flag file needs a "flags" member (write {"flags": {}} to serve no flags on purpose) '
    'or flags at the top level such as {"dark_mode": {"enabled": true}}'
)


class Reusable(Protocol):
    """A previous parse of the same source (a ParsedSource, or the loader's SourceState)."""

    flags: Mapping[str, CompiledFlag]
    signatures: Mapping[str, bytes]
    context: bytes


def parse_flag_document(
    data: bytes, source: str, *, fractional: str = "v2", invalid_flags: str = "reject",
    reuse: Reusable | None = None, limits: Limits = DEFAULT_LIMITS,
) -> ParsedSource:
    """Parse, validate and compile one flag file.

    Args:
        data: the file's bytes (UTF-8 JSON; a leading BOM is tolerated).
        source: the file's name, as problems should name it.
        fractional: bucketing version of flagd ``fractional`` rules, "v1", "v2" or "v3".
        invalid_flags: "reject" (any broken flag refuses the file) or "isolate".
        reuse: the previous parse of this source: flags whose JSON and whose file context are
            byte for byte the same are taken from it, not compiled again (an edit of a large
            file usually changes a few flags).
        limits: how large, deep and expansive the document may be (see agent.engine.limits).

    Raises:
        FlagFileError: the file cannot be served (see the module docstring).
    """
    if fractional not in FRACTIONAL_VERSIONS:
        raise ValueError(f"fractional must be one of {', '.join(FRACTIONAL_VERSIONS)}, not {fractional!r}")
    if invalid_flags not in ("reject", "isolate"):
        raise ValueError(f'invalid_flags must be "reject" or "isolate", not {invalid_flags!r}')
    doc = decode_document(data, source, limits)
    context = orjson.dumps([fractional, invalid_flags, doc.get("metadata"), doc.get("$evaluators"),
                            limits.max_rule_nodes, limits.max_depth])
    if "flags" in doc:
        reader: _Reader = _DocumentReader(source, doc, fractional, strict=invalid_flags == "reject", limits=limits)
    else:
        reader = _FlatReader(source, doc)
    count = reader.count()
    if count > limits.max_flags:
        raise FlagFileError([Problem(source, reader.flags_path, f"{count:,} flags, more than the limit of "
                                                                f"{limits.max_flags:,} (the max-flags setting)")])
    if reuse is not None and reuse.context == context:
        reader.reuse = reuse
    flags, problems = reader.read()
    if problems and (invalid_flags == "reject" or reader.fatal):
        raise FlagFileError(problems)
    return ParsedSource(source=source, format=reader.format, flags=MappingProxyType(flags),
                        problems=tuple(problems), document=doc, metadata=reader.metadata,
                        signatures=MappingProxyType(reader.signatures), context=context)


class _Reader:
    """What both document shapes share: per-flag compilation and isolation of broken flags."""

    format = "simple-flat"
    metadata: Mapping[str, Any] = EMPTY
    flags_path = "$"

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.fatal = False  # a problem of the file itself: refused whatever invalid_flags says
        self.reuse: Reusable | None = None
        self.signatures: dict[str, bytes] = {}

    def file_problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.source, path, message))
        self.fatal = True

    def read(self) -> tuple[dict[str, CompiledFlag], list[Problem]]:
        flags: dict[str, CompiledFlag] = {}
        signatures = self.signatures
        old_flags = self.reuse.flags if self.reuse is not None else EMPTY
        old_signatures = self.reuse.signatures if self.reuse is not None else EMPTY
        for key, raw, path, kind in self.entries():
            # Key order is left out (a reordered flag is the same flag), types are not.
            text = canonical_json([kind, raw])
            # A digest, not the bytes: orjson hands back a buffer of 4 KiB or more per call.
            signature = signatures[key] = blake2b(text, digest_size=16).digest()
            old = old_flags.get(key)
            if old is not None and not old.problems and old_signatures.get(key) == signature:
                # Keep the old objects, so that what a re-parse allocates is all garbage soon
                # and the heap it used can be given back, not pinned by survivors among it.
                signatures[key] = old_signatures[key]
                flags[key] = old
                continue
            found: list[Problem] = []
            flag = self.compile(key, raw, path, kind, found, text)
            if found:
                self.problems.extend(found)
                flag = self.isolate(key, kind, text, found)
            flags[key] = flag
        return flags, self.problems

    def entries(self) -> Iterator[tuple[str, Any, Where, str]]:
        raise NotImplementedError

    def count(self) -> int:
        """How many flags the document holds (before any is read)."""
        raise NotImplementedError

    def compile(self, key: str, raw: Any, path: Where, kind: str, found: list[Problem], text: bytes) -> CompiledFlag | None:
        """``text``: the flag's canonical JSON (:func:`~agent.engine.model.canonical_json` of ``[kind, raw]``)."""
        if type(raw) is not dict:
            found.append(Problem(self.source, render(path), f"a flag must be an object, got {json_type(raw)}", key))
            return None
        if kind == "simple":
            return compile_simple_flag(key, raw, path, source=self.source, metadata=self.metadata, found=found,
                                       text=text)
        return self.compile_flagd(key, raw, path, found, text)

    def compile_flagd(self, key: str, raw: dict, path: Where, found: list[Problem], text: bytes) -> CompiledFlag | None:
        raise NotImplementedError  # only documents with a "flags" member hold flagd flags

    def isolate(self, key: str, kind: str, text: bytes, found: list[Problem]) -> CompiledFlag:
        message = "; ".join(f"{p.path}: {p.message}" for p in found)
        return CompiledFlag(
            key=key, value_type=None, variants=EMPTY, default_variant=None, metadata=EMPTY,
            enabled=False, source=self.source, format=kind,
            fingerprint=fingerprint(b"broken", text, canonical_json(message)),
            static=broken_table(key, f"flag {key!r} is invalid: {message}"), problems=tuple(found),
            definition=definition_text(text),
        )


class _FlatReader(_Reader):
    """``{KEY: {"enabled": ...}}``: simple flags at the top level."""

    def __init__(self, source: str, doc: dict) -> None:
        super().__init__(source)
        self.doc = {k: v for k, v in doc.items() if k != "$schema"}
        if not self.doc:  # {}: serving it would silently remove every flag
            raise FlagFileError([Problem(source, "$", _NO_FLAGS)])
        looks_simple = any(type(v) is dict and v.keys() & SIMPLE_KEYS for v in self.doc.values())
        if not looks_simple:
            raise FlagFileError([Problem(source, "$", _NOT_A_FLAG_FILE)])

    def count(self) -> int:
        return len(self.doc)

    def entries(self) -> Iterator[tuple[str, Any, Where, str]]:
        for key, raw in self.doc.items():
            yield key, raw, ("$", key), "simple"


class _DocumentReader(_Reader):
    """``{"flags": ..., "metadata": ..., "$evaluators": ...}``, flags in either shape."""

    flags_path = "$.flags"

    def __init__(self, source: str, doc: dict, fractional: str, *, strict: bool, limits: Limits) -> None:
        super().__init__(source)
        self.doc = doc
        spec, problems = structure(doc, FileSpec, source=source, path="$", flag=None)
        for p in problems:
            self.file_problem(p.path, p.message)
        self.metadata = spec.metadata if spec else EMPTY
        # A broken file is refused whole, but its flags are still checked so that every problem
        # is told at once; against the evaluators that are well formed, as if the others were not there.
        evaluators = spec.evaluators if spec else _well_formed(doc.get("$evaluators"))
        flags = doc["flags"]
        self.format = document_format(doc)
        if type(flags) not in (dict, list):
            self.file_problem("$.flags", "must be an object of flags by key, or an array of flags with a "
                                         f"\"key\"; got {json_type(flags)}")
        self.flagd = FlagdCompiler(source, fractional=fractional, strict=strict, evaluators=evaluators,
                                   metadata=self.metadata, report=self.problems.append, limits=limits)
        self.flagd.check_evaluators()

    def count(self) -> int:
        flags = self.doc["flags"]
        return len(flags) if type(flags) in (dict, list) else 0

    def compile_flagd(self, key: str, raw: dict, path: Where, found: list[Problem], text: bytes) -> CompiledFlag | None:
        return self.flagd.compile_flag(key, raw, path, found, text)

    def read(self) -> tuple[dict[str, CompiledFlag], list[Problem]]:
        flags, problems = super().read()
        # An evaluator's problem shows up once for the evaluator and again for each flag using
        # it; keep the flags' reports, which say who is affected.
        with_flag = {(p.path, p.message) for p in problems if p.flag is not None}
        self.problems = [p for p in problems if p.flag is not None or (p.path, p.message) not in with_flag]
        return flags, self.problems

    def entries(self) -> Iterator[tuple[str, Any, Where, str]]:
        flags = self.doc["flags"]
        if type(flags) is dict:
            for key, raw in flags.items():
                path = ("$.flags", key)  # rendered as text only for a problem
                if not key:
                    self.problems.append(Problem(self.source, render(path), "a flag key must not be empty"))
                    continue
                yield key, raw, path, flag_kind(raw)
            return
        if type(flags) is not list:
            return  # a file problem already
        seen: dict[str, str] = {}
        for i, raw in enumerate(flags):
            path = f"$.flags[{i}]"
            key = raw.get("key") if type(raw) is dict else None
            if type(key) is not str or not key:
                what = "an object" if type(raw) is not dict else "a non-empty string \"key\""
                self.problems.append(Problem(self.source, path if type(raw) is not dict else f"{path}.key",
                                             f"each flag of the array must be {what}"))
                continue
            if key in seen:
                self.problems.append(Problem(self.source, f"{path}.key",
                                             f"duplicate flag key {key!r} (also at {seen[key]})", key))
                continue
            seen[key] = path
            yield key, raw, path, flag_kind(raw)


def _well_formed(evaluators: Any) -> Mapping[str, Any]:
    if type(evaluators) is not dict:
        return EMPTY
    return {name: rule for name, rule in evaluators.items() if name and type(rule) is dict}
