"""A small Gherkin reader: enough of the language for flagd's testbed features.

Reads Feature / Background / Scenario / Scenario Outline (Scenario Template) / Examples with tags
at every level, step data tables, ``#`` comments, free-text descriptions, doc strings (skipped),
and table cells with ``\\|``, ``\\\\``, ``\\n``
and ``\\"`` escapes. An outline becomes one :class:`Scenario` per example row, with ``<name>``
placeholders filled in, so each can be its own test item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_KEYWORDS = ("Given", "When", "Then", "And", "But", "*")
_CELL_ESCAPES = {"|": "|", "\\": "\\", "n": "\n", '"': '"'}


class GherkinError(ValueError):
    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Step:
    keyword: str
    text: str
    table: tuple[tuple[str, ...], ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Scenario:
    feature: str
    name: str
    tags: frozenset[str]
    steps: tuple[Step, ...]
    path: Path
    line: int
    example: str = ""  # "Examples name #row" for outline rows

    @property
    def id(self) -> str:
        base = f"{self.path.name}:{self.line} {self.name}"
        return f"{base} [{self.example}]" if self.example else base


@dataclass
class _RawStep:
    """A step as read: its table rows are appended while the following lines are read."""

    keyword: str
    text: str
    line: int
    rows: list[tuple[tuple[str, ...], int]] = field(default_factory=list)

    def build(self, values: dict[str, str] | None = None) -> Step:
        def fill(text: str) -> str:
            return _fill(text, values) if values else text

        table = tuple(tuple(fill(c) for c in cells) for cells, _ in self.rows)
        return Step(self.keyword, fill(self.text), table, self.line)


@dataclass
class _Examples:
    name: str
    tags: frozenset[str]
    line: int
    rows: list[tuple[tuple[str, ...], int]] = field(default_factory=list)


@dataclass
class _Block:
    kind: str  # "background", "scenario", "outline"
    name: str
    tags: frozenset[str]
    line: int
    steps: list[_RawStep] = field(default_factory=list)
    examples: list[_Examples] = field(default_factory=list)


def split_cells(line: str) -> tuple[str, ...]:
    """The cells of one ``| a | b |`` table row, unescaped and stripped."""
    body = line.strip()
    if not (body.startswith("|") and body.endswith("|")) or len(body) < 2:
        raise ValueError(f"not a table row: {line!r}")
    cells, current, i = [], [], 1
    while i < len(body) - 1:
        ch = body[i]
        if ch == "\\" and body[i + 1] in _CELL_ESCAPES:
            current.append(_CELL_ESCAPES[body[i + 1]])
            i += 2
            continue
        if ch == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    cells.append("".join(current).strip())
    return tuple(cells)


def parse_feature(path: Path) -> list[Scenario]:
    """Every scenario of one feature file, outlines expanded."""
    lines = path.read_text(encoding="utf-8").splitlines()
    feature_name, feature_tags = "", frozenset()
    pending_tags: set[str] = set()
    blocks: list[_Block] = []
    target: list | None = None  # where table rows go: a step's table or the examples' rows
    fence: str | None = None  # inside a doc string opened by this fence (its text is not used)
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if fence is not None:
            fence = None if text.startswith(fence) else fence
            continue
        if text.startswith(('"""', "```")):
            fence = text[:3]
            continue
        if not text or text.startswith("#"):
            continue
        if text.startswith("@"):
            pending_tags.update(t for t in text.split() if t.startswith("@"))
            continue
        if text.startswith("|"):
            if target is None:
                raise GherkinError(path, number, "table row outside a step or Examples")
            target.append((split_cells(text), number))
            continue
        keyword, _, rest = text.partition(":")
        tags, pending_tags = frozenset(pending_tags), set()
        if keyword == "Feature":
            feature_name, feature_tags = rest.strip(), tags
        elif keyword == "Background":
            blocks.append(_Block("background", rest.strip(), tags, number))
        elif keyword in ("Scenario", "Example"):
            blocks.append(_Block("scenario", rest.strip(), tags, number))
        elif keyword in ("Scenario Outline", "Scenario Template"):
            blocks.append(_Block("outline", rest.strip(), tags, number))
        elif keyword in ("Examples", "Scenarios"):
            if not blocks or blocks[-1].kind != "outline":
                raise GherkinError(path, number, "Examples outside a Scenario Outline")
            blocks[-1].examples.append(_Examples(rest.strip(), tags, number))
            target = blocks[-1].examples[-1].rows
            continue
        else:
            word = text.split(" ", 1)[0]
            if word not in _KEYWORDS or not blocks:
                if not blocks or not blocks[-1].steps:
                    continue  # free-form description under Feature / Scenario
                raise GherkinError(path, number, f"unexpected line {text!r}")
            raw_step = _RawStep(word, text[len(word):].strip(), number)
            blocks[-1].steps.append(raw_step)
            target = raw_step.rows
            continue
        target = None
    return list(_expand(path, feature_name, feature_tags, blocks))


def _fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"<([^<>]+)>", lambda m: values.get(m.group(1), m.group(0)), text)


def _expand(path: Path, feature: str, feature_tags: frozenset[str], blocks: list[_Block]):
    background: list[_RawStep] = []
    for block in blocks:
        if block.kind == "background":
            background = block.steps
            continue
        tags = feature_tags | block.tags
        if block.kind == "scenario":
            steps = tuple(s.build() for s in [*background, *block.steps])
            yield Scenario(feature, block.name, tags, steps, path, block.line)
            continue
        for examples in block.examples:
            if not examples.rows:
                continue
            header, *rows = examples.rows
            for index, (cells, number) in enumerate(rows, start=1):
                values = dict(zip(header[0], cells))
                steps = tuple(s.build(values) for s in [*background, *block.steps])
                label = f"{examples.name or 'Examples'} #{index}"
                yield Scenario(feature, _fill(block.name, values), tags | examples.tags, steps, path, number, label)
