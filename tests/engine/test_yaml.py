"""YAML flag files: the same shapes and the same strict validation as JSON, and what YAML can
say that JSON cannot refused with the path where it stands."""

from __future__ import annotations

import json
import time

import pytest

from agent.engine.evaluate import evaluate
from agent.engine.formats.document import FlagFileError, parse_flag_document

FLAGD_YAML = b"""\
# Flags of the web team.
metadata:
  team: web
$evaluators:
  staff:
    ends_with: [{var: email}, "@example.com"]
flags:
  banner-color:            # the home page banner
    state: ENABLED
    variants: {red: "#c0392b", blue: "#2980b9"}
    defaultVariant: blue
    targeting:
      if: [{$ref: staff}, red, {fractional: [[red, 10], [blue, 90]]}]
  big-number:
    state: ENABLED
    variants: {one: 1, two: 2.5}
    defaultVariant: one
"""


def test_flagd_yaml_answers_as_its_json_twin():
    from_yaml = parse_flag_document(FLAGD_YAML, "flags.yaml")
    import ruamel.yaml

    as_json = json.dumps(ruamel.yaml.YAML(typ="safe", pure=True).load(FLAGD_YAML)).encode()
    from_json = parse_flag_document(as_json, "flags.json")
    assert set(from_yaml.flags) == set(from_json.flags) == {"banner-color", "big-number"}
    for ctx in ({"email": "ann@example.com"}, {"targetingKey": "u1"}, {"targetingKey": "u2"}, None):
        for key in from_yaml.flags:
            a, b = evaluate(from_yaml.flags, key, ctx, now=1), evaluate(from_json.flags, key, ctx, now=1)
            assert (a.value, a.variant, a.reason) == (b.value, b.variant, b.reason)
    assert from_yaml.flags["banner-color"].metadata["team"] == "web"


@pytest.mark.parametrize("name", ["flags.yml", "FLAGS.YAML"])
def test_simple_format_in_yaml_both_shapes(name):
    nested = parse_flag_document(b"flags:\n  dark_mode: {enabled: true, rollout_percentage: 50}\n", name)
    flat = parse_flag_document(b"dark_mode:\n  enabled: false\n", name)
    assert nested.format == "simple" and flat.format == "simple-flat"
    assert evaluate(flat.flags, "dark_mode", {"targetingKey": "x"}).value is False


@pytest.mark.parametrize(("text", "path", "words"), [
    (b"flags:\n  a:\n    state: ENABLED\n    variants: {x: 1, y: two}\n    defaultVariant: x\n",
     "$.flags.a.variants.y", "one type"),
    (b"flags:\n  a:\n    state: ENABLED\n    variants: {x: 2024-01-01}\n    defaultVariant: x\n",
     "$.flags.a.variants.x", "date"),
    (b"flags:\n  a: !!set {x, y}\n", "$.flags.a", "set"),
    (b"flags:\n  a:\n    variants: {x: !!binary aGVsbG8=}\n", "$.flags.a.variants.x", "bytes"),
    (b"flags:\n  a:\n    variants: {1: on}\n", "$.flags.a.variants", "key 1"),
    (b"flags:\n  a:\n    variants: {x: .nan}\n", "$.flags.a.variants.x", "not a number"),
    (b"flags:\n  a: {enabled: true}\n  a: {enabled: false}\n", "$", "duplicate"),
    (b"flags: [unclosed\n", "$", "line 2"),
    (b"- just\n- a list\n", "$", "mapping"),
    (b"flags:\n  a: " + b"[" * 400 + b"]" * 400 + b"\n", "$.flags.a[0][0]", "deeper"),
])
def test_yaml_problems_name_the_path(text, path, words):
    with pytest.raises(FlagFileError) as caught:
        parse_flag_document(text, "bad.yaml")
    problems = caught.value.problems
    assert any(p.path.startswith(path) and len(p.path) < 200 and words in p.message for p in problems), \
        [str(p) for p in problems]
    assert all(p.source == "bad.yaml" for p in problems)


def test_an_alias_bomb_is_refused_quickly():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("flags: {}")
    started = time.monotonic()
    with pytest.raises(FlagFileError) as caught:
        parse_flag_document("\n".join(lines).encode(), "bomb.yaml")
    assert time.monotonic() - started < 5
    assert "expands" in str(caught.value)
