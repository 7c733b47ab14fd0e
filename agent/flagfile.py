"""Bytes of one flag file -> validated, compiled flags (:class:`~agent.model.ParsedSource`).

Formats, detected per document:

* ``flagd``: ``{"flags": {KEY: {"state", "variants", "defaultVariant", "targeting", "metadata"}}}``
  or ``"flags"`` as an array of such objects each with a ``"key"`` (flagd's own extension), with
  file ``metadata`` and ``$evaluators`` referenced by ``{"$ref": NAME}``;
* ``simple``: ``{"flags": {KEY: {"enabled", "rollout_percentage", "allowed_users", "name",
  "description"}}}`` (see :mod:`agent.flagfile_simple`);
* ``simple-flat``: the same flags at the top level, ``{KEY: {"enabled": true, "rollout": 50}}``.

Inside a ``flags`` map each flag is read by its own keys: one with ``state``/``variants``/
``defaultVariant``/``targeting`` is a flagd flag, one with only simple keys (``enabled``,
``rollout_percentage``, ``rollout``, ``allowed_users``) is a simple flag. So a simple file can
take a flagd flag (what ``set`` with a ``definition`` writes) and vice versa; such a mixed
document reports ``format == "flagd"``, an all-simple one ``"simple"``.

Problems of one flag break that flag only: ``invalid_flags="reject"`` refuses the file listing
every one, ``"isolate"`` loads the rest and the broken flags answer PARSE_ERROR. A file that is
empty, not JSON, not an object, not recognisably a flag file, or whose own ``metadata`` /
``$evaluators`` / ``flags`` member is malformed is always refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from .converter import Broken, FileSpec, FlagdFlagSpec, SimpleFlagSpec, child_path, json_type, structure, variant_kind
from .evaluation import broken_table, static_table, targeting_resolver
from .flagfile_simple import VARIANTS as SIMPLE_VARIANTS
from .flagfile_simple import check_simple, compile_simple
from .model import EMPTY, CompiledFlag, FrozenDict, ParsedSource, Problem, deep_freeze
from .rules import RuleError, compile_rule, resolve_refs

__all__ = ["FlagFileError", "ParsedSource", "Problem", "parse_flag_document"]

FLAGD_KEYS = frozenset({"state", "variants", "defaultVariant", "targeting"})
SIMPLE_KEYS = frozenset({"enabled", "rollout_percentage", "rollout", "allowed_users"})
_NOT_A_FLAG_FILE = (
    'not a flag file: expected a "flags" member (flagd or simple format) or top-level flags '
    'such as {"dark_mode": {"enabled": true}}'
)


class FlagFileError(Exception):
    """A flag source that cannot be served; ``problems`` says every reason, with JSON paths."""

    def __init__(self, problems: tuple[Problem, ...] | list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def parse_flag_document(
    data: bytes, source: str, *, fractional: str = "v2", invalid_flags: str = "reject"
) -> ParsedSource:
    """Parse, validate and compile one flag file.

    Args:
        data: the file's bytes (UTF-8 JSON; a leading BOM is tolerated).
        source: the file's name, as problems should name it.
        fractional: bucketing version of flagd ``fractional`` rules, "v2" or "v3".
        invalid_flags: "reject" (any broken flag refuses the file) or "isolate".

    Raises:
        FlagFileError: the file cannot be served (see the module docstring).
    """
    if fractional not in ("v2", "v3"):
        raise ValueError(f'fractional must be "v2" or "v3", not {fractional!r}')
    if invalid_flags not in ("reject", "isolate"):
        raise ValueError(f'invalid_flags must be "reject" or "isolate", not {invalid_flags!r}')
    doc = _decode(data, source)
    if "flags" in doc:
        reader = _DocumentReader(source, doc, fractional, strict=invalid_flags == "reject")
    else:
        reader = _FlatReader(source, doc)
    flags, problems = reader.read()
    if problems and (invalid_flags == "reject" or reader.fatal):
        raise FlagFileError(problems)
    return ParsedSource(source=source, format=reader.format, flags=MappingProxyType(flags),
                        problems=tuple(problems), document=doc, metadata=reader.metadata)


def _decode(data: bytes, source: str) -> dict:
    def refuse(message: str) -> FlagFileError:
        return FlagFileError([Problem(source, "$", message)])

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise refuse("file is empty")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise refuse(f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if type(doc) is not dict:
        raise refuse(f"a flag file must be a JSON object, got {json_type(doc)}")
    return doc


def fingerprint(effective: Any) -> str:
    """A digest equal for equal effective definitions (key order does not matter)."""
    return hashlib.sha256(orjson.dumps(effective, option=orjson.OPT_SORT_KEYS)).hexdigest()


class _Reader:
    """What both document shapes share: per-flag compilation and isolation of broken flags."""

    format = "simple-flat"
    metadata: Mapping[str, Any] = EMPTY

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.fatal = False  # a problem of the file itself: refused whatever invalid_flags says

    def file_problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.source, path, message))
        self.fatal = True

    def read(self) -> tuple[dict[str, CompiledFlag], list[Problem]]:
        flags: dict[str, CompiledFlag] = {}
        for key, raw, path, kind in self.entries():
            found: list[Problem] = []
            flag = self.compile(key, raw, path, kind, found)
            if found:
                self.problems.extend(found)
                flag = self.isolate(key, raw, kind, found)
            flags[key] = flag
        return flags, self.problems

    def entries(self) -> Iterator[tuple[str, Any, str, str]]:
        raise NotImplementedError

    def compile(self, key: str, raw: Any, path: str, kind: str, found: list[Problem]) -> CompiledFlag | None:
        if type(raw) is not dict:
            found.append(Problem(self.source, path, f"a flag must be an object, got {json_type(raw)}", key))
            return None
        if kind == "simple":
            return self.compile_simple(key, raw, path, found)
        return self.compile_flagd(key, raw, path, found)

    def broken(self, found: list[Problem], key: str, path: str, where: tuple[str, ...], exc: Broken) -> None:
        for step in where:
            path = child_path(path, step)
        found.append(Problem(self.source, path, exc.message, key))

    def compile_simple(self, key: str, raw: dict, path: str, found: list[Problem]) -> CompiledFlag | None:
        spec, problems = structure(raw, SimpleFlagSpec, source=self.source, path=path, flag=key)
        found.extend(problems)
        if spec is None:
            return None
        for where, exc in check_simple(key, spec):
            self.broken(found, key, path, where, exc)
        if found:
            return None
        default_variant, static, resolver = compile_simple(key, spec, self.metadata)
        return CompiledFlag(
            key=key, value_type="boolean", variants=SIMPLE_VARIANTS, default_variant=default_variant,
            metadata=self.metadata, enabled=spec.enabled, source=self.source, format="simple",
            definition=deep_freeze(raw), fingerprint=fingerprint(["simple", raw, self.metadata]),
            static=static, resolver=resolver,
        )

    def compile_flagd(self, key: str, raw: dict, path: str, found: list[Problem]) -> CompiledFlag | None:
        raise NotImplementedError

    def isolate(self, key: str, raw: Any, kind: str, found: list[Problem]) -> CompiledFlag:
        message = "; ".join(f"{p.path}: {p.message}" for p in found)
        return CompiledFlag(
            key=key, value_type=None, variants=EMPTY, default_variant=None, metadata=EMPTY,
            enabled=False, source=self.source, format=kind, definition=deep_freeze(raw),
            fingerprint=fingerprint(["broken", raw, message]),
            static=broken_table(key, f"flag {key!r} is invalid: {message}"), problems=tuple(found),
        )


class _FlatReader(_Reader):
    """``{KEY: {"enabled": ...}}``: simple flags at the top level."""

    def __init__(self, source: str, doc: dict) -> None:
        super().__init__(source)
        self.doc = {k: v for k, v in doc.items() if k != "$schema"}
        looks_simple = any(type(v) is dict and v.keys() & SIMPLE_KEYS for v in self.doc.values())
        if self.doc and not looks_simple:
            raise FlagFileError([Problem(source, "$", _NOT_A_FLAG_FILE)])

    def entries(self) -> Iterator[tuple[str, Any, str, str]]:
        for key, raw in self.doc.items():
            yield key, raw, child_path("$", key), "simple"


class _DocumentReader(_Reader):
    """``{"flags": ..., "metadata": ..., "$evaluators": ...}``, flags in either shape."""

    def __init__(self, source: str, doc: dict, fractional: str, *, strict: bool) -> None:
        super().__init__(source)
        self.doc = doc
        self.fractional = fractional
        self.strict = strict
        spec, problems = structure(doc, FileSpec, source=source, path="$", flag=None)
        for p in problems:
            self.file_problem(p.path, p.message)
        self.metadata = spec.metadata if spec else EMPTY
        self.evaluators = spec.evaluators if spec else EMPTY
        flags = doc["flags"]
        if type(flags) is list:
            self.format = "flagd"
        elif type(flags) is dict:
            simple = flags and all(self.kind(v) == "simple" for v in flags.values())
            self.format = "simple" if simple and not self.evaluators else "flagd"
        else:
            self.file_problem("$.flags", f"must be an object of flags by key, or an array of flags with a \"key\"; got {json_type(flags)}")
        self.check_evaluators()

    @staticmethod
    def kind(raw: Any) -> str:
        if type(raw) is dict and raw.keys() & SIMPLE_KEYS and not raw.keys() & FLAGD_KEYS:
            return "simple"
        return "flagd"

    def check_evaluators(self) -> None:
        """Compile each evaluator alone, so one that no flag uses is still checked."""
        for name, rule in self.evaluators.items():
            path = child_path("$.$evaluators", name)
            try:
                resolved = resolve_refs(rule, self.evaluators, path)
                self.compile_rule(resolved, "", path, None)
            except RuleError as exc:
                self.problems.append(Problem(self.source, exc.path, exc.message))

    def compile_rule(self, rule: Any, key: str, path: str, flag: str | None) -> Any:
        """compile_rule, strict when rejecting; when isolating, flagd's run-time answer for rules
        its schema refuses but its evaluators serve, each such problem still reported."""
        def tolerated(exc: RuleError) -> None:
            self.problems.append(Problem(self.source, exc.path, f"{exc.message} (served as flagd does)", flag))

        return compile_rule(rule, flag_key=key, fractional=self.fractional, path=path,
                            strict=self.strict, on_problem=None if self.strict else tolerated)

    def read(self) -> tuple[dict[str, CompiledFlag], list[Problem]]:
        flags, problems = super().read()
        # An evaluator's problem shows up once for the evaluator and again for each flag using
        # it; keep the flags' reports, which say who is affected.
        with_flag = {(p.path, p.message) for p in problems if p.flag is not None}
        self.problems = [p for p in problems if p.flag is not None or (p.path, p.message) not in with_flag]
        return flags, self.problems

    def entries(self) -> Iterator[tuple[str, Any, str, str]]:
        flags = self.doc["flags"]
        if self.fatal:
            return
        if type(flags) is dict:
            for key, raw in flags.items():
                path = child_path("$.flags", key)
                if not key:
                    self.problems.append(Problem(self.source, path, "a flag key must not be empty"))
                    continue
                yield key, raw, path, self.kind(raw)
            return
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
                self.problems.append(Problem(self.source, f"{path}.key", f"duplicate flag key {key!r} (also at {seen[key]})", key))
                continue
            seen[key] = path
            yield key, raw, path, self.kind(raw)

    def compile_flagd(self, key: str, raw: dict, path: str, found: list[Problem]) -> CompiledFlag | None:
        spec, problems = structure(raw, FlagdFlagSpec, source=self.source, path=path, flag=key)
        found.extend(problems)
        if spec is None:
            return None
        variants = deep_freeze(spec.variants)
        default = spec.default_variant
        if default is not None and default not in variants:
            self.broken(found, key, path, ("defaultVariant",), Broken(
                f"must name one of the variants ({', '.join(variants)}) or be null, got {default!r}"))
        rule, resolved = self.compile_targeting(key, spec.targeting, path, found)
        if found:
            return None
        metadata = FrozenDict({**self.metadata, **spec.metadata})
        effective = {k: v for k, v in raw.items() if k != "key"}
        effective["metadata"] = metadata
        if rule is not None:
            effective["targeting"] = resolved
            effective["$fractional"] = self.fractional
        enabled = spec.state == "ENABLED"
        if rule is None or not enabled:
            static, resolver = static_table(key, variants, default, metadata, enabled=enabled), None
        else:
            static, resolver = None, targeting_resolver(key, rule, variants, default, metadata,
                                                        reads_clock=reads_clock(resolved))
        return CompiledFlag(
            key=key, value_type=_value_type(variants), variants=variants, default_variant=default,
            metadata=metadata, enabled=enabled, source=self.source, format="flagd",
            definition=deep_freeze(raw), fingerprint=fingerprint(effective), static=static, resolver=resolver,
        )

    def compile_targeting(self, key: str, targeting: dict | None, path: str, found: list[Problem]) -> tuple[Any, Any]:
        if not targeting:  # absent, null or {}: no targeting
            return None, None
        tpath = child_path(path, "targeting")
        try:
            resolved = resolve_refs(targeting, self.evaluators, tpath)
            return self.compile_rule(resolved, key, tpath, key), resolved
        except RuleError as exc:
            found.append(Problem(self.source, exc.path, exc.message, key))
        except Exception as exc:  # a bug in a rule compiler must break this flag, not the file
            found.append(Problem(self.source, tpath, f"could not compile targeting ({type(exc).__name__}: {exc})", key))
        return None, None


def reads_clock(rule: Any) -> bool:
    """Whether a rule may read ``$flagd.timestamp`` (when unsure: yes).

    Reading the clock is a measurable part of evaluating a simple rule, and few rules use it.
    A rule can see the timestamp only through a ``var`` (or ``missing``) path naming it, the
    whole ``$flagd`` object, or the whole context (``{"var": ""}``), or through a computed path.
    """
    if type(rule) is list:
        return any(reads_clock(item) for item in rule)
    if type(rule) is str:
        return rule == "$flagd" or rule.startswith("$flagd.timestamp")
    if type(rule) is not dict:
        return False
    if "var" in rule:
        path = rule["var"]
        path = path[0] if type(path) is list and path else path
        if path is None or path == "" or path == [] or type(path) not in (str, int, float):
            return True
    return any(reads_clock(v) for v in rule.values())


def _value_type(variants: Mapping[str, Any]) -> str:
    kinds = {variant_kind(v) for v in variants.values()}
    if len(kinds) == 1:
        return kinds.pop()
    return "float"  # the only mix validation lets through: integers with floats
