"""A flag document the JSON parser accepts but the agent cannot serve exactly is refused, with where.

Issue 13 point 1: nesting that breaks the canonical writer, duplicate keys and rounded integers
that JSON decoding hides, ``{}`` that removes every flag, and limits (size, flag count) on what
one document may hold. Each is tried in several places and at several depths, not only the
reported one.
"""

from __future__ import annotations

import json

import orjson
import pytest

from agent.engine.evaluate import evaluate
from agent.engine.formats.decoding import FlagFileError, decode_document, nesting, too_deep
from agent.engine.formats.document import parse_flag_document
from agent.engine.limits import DEFAULT_LIMITS, MAX_DEPTH, Limits

FLAG = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}


def nested(depth: int, leaf=1):
    """``depth`` levels of arrays around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def text_nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def parse_text(text: str | bytes, **kwargs):
    data = text.encode() if isinstance(text, str) else text
    return parse_flag_document(data, "flags.json", **kwargs)


def refusal(text: str | bytes, **kwargs) -> list[tuple[str, str]]:
    with pytest.raises(FlagFileError) as caught:
        parse_text(text, **kwargs)
    return [(p.path, p.message) for p in caught.value.problems]


# --- depth ------------------------------------------------------------------------------------

# Where deep JSON can sit in a flag file, as text with DEEP marking the spot, and how many
# levels of the document lie above that spot.
PLACES = {
    "object variant": ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": {"v": DEEP}, "off": {}}, '
                       '"defaultVariant": "on"}}}', 5),
    "targeting": ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", '
                  '"targeting": {"if": [{"==": [1, DEEP]}, "on", null]}}}}', 7),
    "evaluator": ('{"$evaluators": {"e": {"in": ["x", DEEP]}}, "flags": {"a": {"state": "ENABLED", '
                  '"variants": {"on": true}, "defaultVariant": "on"}}}', 4),
    "unknown flag key": ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", '
                         '"extra": DEEP}}}', 3),
    "top-level member": ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}, '
                         '"notes": DEEP}', 1),
    "flags array": ('{"flags": [{"key": "a", "state": "ENABLED", "variants": {"on": {"v": DEEP}}, '
                    '"defaultVariant": "on"}]}', 5),
}


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("depth", [65, 252, 255, 300, 600, 1000, 1019])
def test_json_nested_beyond_the_limit_is_refused_with_its_path(place, depth):
    # 255-1024 used to pass the parser and crash the canonical writer with a TypeError.
    template, above = PLACES[place]
    problems = refusal(template.replace("DEEP", text_nested(depth)))
    assert len(problems) == 1, problems
    path, message = problems[0]
    assert f"more than {MAX_DEPTH} levels deep" in message and "max-depth" in message
    if path != "$":
        assert path.count("[0]") >= MAX_DEPTH - above - 2, path
    else:  # past what orjson decodes at all (1,024 levels): the place is a line and column
        assert depth + above > 1020 and "line 1, column" in message


@pytest.mark.parametrize("place", sorted(PLACES))
def test_json_nested_right_up_to_the_limit_loads(place):
    template, _ = PLACES[place]
    depth = next(d for d in range(1, MAX_DEPTH) if nesting(_outside(template.replace("DEEP", text_nested(d))),
                                                          10_000) == MAX_DEPTH)
    parse_text(template.replace("DEEP", text_nested(depth)), invalid_flags="isolate")
    assert "levels deep" in refusal(template.replace("DEEP", text_nested(depth + 1)))[0][1]


def _outside(text: str) -> bytes:
    from agent.engine.formats.decoding import _neutral_escapes, _outside_strings

    return _outside_strings(_neutral_escapes(text.encode()))


def test_nesting_beyond_what_the_parser_reads_is_refused_too():
    problems = refusal('{"flags": ' + text_nested(5000) + "}")
    assert problems[0][0] == "$" and "levels deep" in problems[0][1]


def test_the_depth_limit_is_a_setting():
    text = json.dumps({"flags": {"a": {**FLAG, "variants": {"on": {"x": nested(10)}}}}})
    parse_text(text)
    path, message = refusal(text, limits=Limits(max_depth=12))[0]
    assert path == "$.flags.a.variants.on.x" + "[0]" * 7 and "more than 12 levels" in message
    with pytest.raises(ValueError):
        Limits(max_depth=3)


def test_brackets_and_quotes_inside_strings_do_not_count_as_nesting():
    tricky = ['[[[[{{{{', ']]]]}}}}', 'a\\"[[[[', '\\\\"', '"{"', "\\\\\\\"[[", ":::", "\u0022"]
    doc = {"flags": {"a": {**FLAG, "variants": {"on": {"v": tricky}, "off": {"v": "]" * 100}},
                           "metadata": {"k": "[" * 200}}}}
    flags = parse_text(json.dumps(doc)).flags
    assert evaluate(flags, "a").value == {"v": tricky}


def test_too_deep_names_the_first_deep_path_in_document_order():
    value = {"a": [1, 2], "b": {"c": [[]], "d": [[[[]]]]}}
    assert too_deep(value, 4) == "$.b.d[0][0]"
    assert too_deep(value, 6) is None


# --- duplicate keys ---------------------------------------------------------------------------

DUPLICATES = {
    "flag key": ('{"flags": {"a": FLAG, "b": FLAG, "a": FLAG}}', "$.flags.a", "duplicate flag key 'a'"),
    "variant": ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": true, "on": false}, '
                '"defaultVariant": "on"}}}', "$.flags.a.variants.on", "duplicate key 'on'"),
    "flag field": ('{"flags": {"a": {"state": "ENABLED", "state": "DISABLED", "variants": {"on": true}, '
                   '"defaultVariant": "on"}}}', "$.flags.a.state", "duplicate key 'state'"),
    "flags member": ('{"flags": {"a": FLAG}, "flags": {"b": FLAG}}', "$.flags", "duplicate key 'flags'"),
    "inside a rule": ('{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", '
                      '"targeting": {"if": [{"var": "x", "var": "y"}, "on", null]}}}}',
                      "$.flags.a.targeting.if[0].var", "duplicate key 'var'"),
    "in an array": ('{"flags": [{"key": "a", "state": "ENABLED", "variants": {"on": {"x": 1, "x": 2}}, '
                    '"defaultVariant": "on"}]}', "$.flags[0].variants.on.x", "duplicate key 'x'"),
    "escaped alike": ('{"flags": {"a": FLAG, "\\u0061": FLAG}}', "$.flags.a", "duplicate flag key 'a'"),
    "flat simple": ('{"a": {"enabled": true}, "a": {"enabled": false}}', "$.a", "duplicate key 'a'"),
    "quote in key": ('{"flags": {"q\\"k": FLAG, "q\\"k": FLAG}}', "$.flags['q\"k']", "duplicate flag key"),
}


@pytest.mark.parametrize("case", sorted(DUPLICATES))
def test_a_duplicate_key_is_refused_with_its_path(case):
    template, path, words = DUPLICATES[case]
    problems = refusal(template.replace("FLAG", json.dumps(FLAG)))
    assert [p for p, _ in problems] == [path], problems
    assert words in problems[0][1]


def test_repeated_keys_in_different_objects_are_not_duplicates():
    doc = {"flags": {k: {**FLAG, "metadata": {"owner": "x", "k": k}} for k in ("a", "b", "c")},
           "metadata": {"owner": "y"}}
    assert len(parse_text(json.dumps(doc, indent=2)).flags) == 3


def test_colons_quotes_and_backslashes_in_strings_do_not_look_like_members():
    keys = ["a:b", 'q"uote', "back\\slash", "\\", '\\"', ":", '":"', "x\\\\"]
    doc = {"flags": {k: FLAG for k in keys}}
    assert sorted(parse_text(json.dumps(doc)).flags) == sorted(keys)
    assert sorted(parse_text(json.dumps(doc, ensure_ascii=False)).flags) == sorted(keys)


# --- numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [2**53 + 1, 2**63 - 1, 2**64 - 1, -(2**63), -(2**53) - 1])
def test_integers_that_fit_in_64_bits_are_kept_exact(value):
    doc = {"flags": {"n": {"state": "ENABLED", "variants": {"big": value, "small": 1}, "defaultVariant": "big"}}}
    res = evaluate(parse_text(json.dumps(doc)).flags, "n")
    assert res.value == value and type(res.value) is int
    assert orjson.dumps(res.value) == str(value).encode()  # and the wire keeps it too


@pytest.mark.parametrize("literal", ["18446744073709551616", "-9223372036854775809", "1" + "0" * 30,
                                     "-" + "9" * 40])
@pytest.mark.parametrize("where", ["variants", "metadata", "targeting"])
def test_an_integer_orjson_would_round_is_refused_with_its_path(literal, where):
    variants, metadata, rule = '{"on": true}', "{}", '{"==": [1, 1]}'
    if where == "variants":
        variants, path = '{"on": %s}' % literal, "$.flags.n.variants.on"
    elif where == "metadata":
        metadata, path = '{"owner": %s}' % literal, "$.flags.n.metadata.owner"
    else:
        rule, path = '{"==": [{"var": "x"}, %s]}' % literal, "$.flags.n.targeting['=='][1]"
    text = ('{"flags": {"n": {"state": "ENABLED", "variants": %s, "defaultVariant": "on", "metadata": %s, '
            '"targeting": %s}}}') % (variants, metadata, rule)
    problems = refusal(text)
    assert [p for p, _ in problems] == [path]
    assert literal.lstrip("-")[:15] in problems[0][1] and "64 bits" in problems[0][1]


def test_long_digit_runs_in_strings_and_floats_are_not_integers():
    text = ('{"flags": {"s": {"state": "ENABLED", "variants": {"id": "123456789012345678901234567890"}, '
            '"defaultVariant": "id"}, "n": {"state": "ENABLED", "variants": {"f": 0.123456789012345678901234567, '
            '"g": 123456789012345678901234.5, "e": 1.5e-1234567890123456789, "h": 1.5e+123456789012345678901}, '
            '"defaultVariant": "g"}}}')
    # (h is infinity: refused by the parser, with its own message; the others load)
    with pytest.raises(FlagFileError, match="not valid JSON"):
        parse_text(text)
    flags = parse_text(text.replace(', "h": 1.5e+123456789012345678901', "")).flags
    assert evaluate(flags, "s").value == "123456789012345678901234567890"
    assert evaluate(flags, "n").value == 123456789012345678901234.5


# --- {} and the flag count --------------------------------------------------------------------

@pytest.mark.parametrize("text", ["{}", " { } ", '{"$schema": "https://flagd.dev/schema/v0/flags.json"}',
                                  "\ufeff{}"])
def test_a_document_without_flags_is_refused_rather_than_removing_every_flag(text):
    assert refusal(text.encode("utf-8"))[0][0] == "$"


def test_an_explicitly_empty_flags_member_serves_no_flags():
    for doc in ({"flags": {}}, {"flags": []}):
        assert dict(parse_text(json.dumps(doc)).flags) == {}


@pytest.mark.parametrize("shape", ["map", "array", "flat"])
def test_more_flags_than_the_limit_are_refused(shape):
    limits = Limits(max_flags=3)
    for count, refused in ((3, False), (4, True)):
        keys = [f"f{i}" for i in range(count)]
        if shape == "map":
            doc, path = {"flags": {k: FLAG for k in keys}}, "$.flags"
        elif shape == "array":
            doc, path = {"flags": [{"key": k, **FLAG} for k in keys]}, "$.flags"
        else:
            doc, path = {k: {"enabled": True} for k in keys}, "$"
        if refused:
            (problem,) = refusal(json.dumps(doc), limits=limits)
            assert problem[0] == path and "4 flags, more than the limit of 3" in problem[1]
        else:
            assert len(parse_text(json.dumps(doc), limits=limits).flags) == 3


def test_a_document_larger_than_the_limit_is_refused_before_it_is_decoded():
    data = json.dumps({"flags": {"a": FLAG}}).encode()
    assert decode_document(data, "f", Limits(max_bytes=len(data)))
    with pytest.raises(FlagFileError, match="more than the limit of"):
        decode_document(data + b" ", "f", Limits(max_bytes=len(data)))


def test_the_default_limits_hold_what_flagd_s_own_examples_need():
    assert DEFAULT_LIMITS.max_depth >= 4 * 14  # the deepest flagd example nests 14 levels


# --- YAML documents keep the same limits ---------------------------------------------------------

def test_a_yaml_document_is_held_to_the_same_depth_and_exact_integers():
    def parse_yaml(text: str, **kwargs):
        return parse_flag_document(text.encode(), "flags.yaml", **kwargs)

    flag = "flags:\n  a:\n    state: ENABLED\n    variants:\n      on: VALUE\n    defaultVariant: 'on'\n"
    assert evaluate(parse_yaml(flag.replace("VALUE", str(2**63 - 1))).flags, "a").value == 2**63 - 1
    for literal in (str(2**64), str(-(2**63) - 1)):
        with pytest.raises(FlagFileError) as caught:
            parse_yaml(flag.replace("VALUE", literal))
        assert [(p.path, "64 bits" in p.message) for p in caught.value.problems] == [("$.flags.a.variants.on", True)]
    deep = "{v: " + "[" * 70 + "1" + "]" * 70 + "}"
    with pytest.raises(FlagFileError) as caught:
        parse_yaml(flag.replace("VALUE", deep))
    assert "more than 64 levels deep" in caught.value.problems[0].message
    assert caught.value.problems[0].path.startswith("$.flags.a.variants.on.v[0]")
    parse_yaml(flag.replace("VALUE", deep), limits=Limits(max_depth=100))
