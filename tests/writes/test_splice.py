"""Only the edited flag's text changes: hand formatting elsewhere survives a write."""

from __future__ import annotations

import difflib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.writes.docedit import SetChange, apply_delete, apply_set, detect_layout, render
from agent.writes.splice import splice

HAND = """{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "banner": {
      "state": "ENABLED",
      "variants": { "red": "#f00", "blue": "#00f" },
      "defaultVariant": "red",
      "targeting": { "if": [ { "==": [ { "var": "plan" }, "pro" ] }, "blue" ] }
    },
    "kill_switch": { "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "off" },
    "ratio": { "state": "ENABLED", "variants": { "low": 1.50, "high": 1e1 }, "defaultVariant": "low" }
  }
}
"""


def edited(text: str, edit) -> str:
    old = json.loads(text)
    return render(text, old, edit(old), detect_layout(text)).decode()


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_changing_one_flag_rewrites_only_that_flag():
    after = edited(HAND, lambda d: apply_set(d, SetChange("kill_switch", simple={"enabled": True}), fractional="v2", where="f"))
    diff = changed_lines(HAND, after)
    assert diff[0] == '-    "kill_switch": { "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "off" },'
    assert all("kill_switch" in line or not line.startswith("-") for line in diff)
    assert '"ratio": { "state": "ENABLED", "variants": { "low": 1.50, "high": 1e1 }, "defaultVariant": "low" }' in after
    assert '"targeting": { "if": [ { "==": [ { "var": "plan" }, "pro" ] }, "blue" ] }' in after
    assert json.loads(after)["flags"]["kill_switch"]["defaultVariant"] == "on"


def test_a_new_flag_is_appended_with_the_siblings_indentation():
    after = edited(HAND, lambda d: apply_set(
        d, SetChange("extra", definition={"state": "DISABLED", "variants": {"a": 1}}), fractional="v2", where="f"))
    diff = changed_lines(HAND, after)
    assert diff[0].startswith('-    "ratio"') and diff[1] == diff[0].replace("-", "+", 1) + ","
    assert diff[2:] == ['+    "extra": {', '+      "state": "DISABLED",', '+      "variants": {', '+        "a": 1',
                        '+      }', '+    }']


def test_delete_first_middle_and_last_leaves_the_rest_as_written():
    for key in ("banner", "kill_switch", "ratio"):
        after = edited(HAND, lambda d: apply_delete(d, key, where="f"))
        assert key not in json.loads(after)["flags"]
        assert all(line.startswith("-") for line in changed_lines(HAND, after)) or key == "ratio"
        for other in {"banner", "kill_switch", "ratio"} - {key}:
            assert other in after
    after = edited(HAND, lambda d: apply_delete(d, "ratio", where="f"))
    assert changed_lines(HAND, after)[-1].startswith('+    "kill_switch"') and after.count("\n") == HAND.count("\n") - 1


def test_array_form_and_flat_form_are_spliced_too():
    text = '{"flags": [\n\t{"key": "a", "state": "ENABLED", "variants": {"v": 1}, "defaultVariant": "v"},\n\t{"key": "b", "state": "ENABLED", "variants": {"v": 2}, "defaultVariant": "v"}\n]}\n'
    after = edited(text, lambda d: apply_delete(d, "a", where="f"))
    assert after == '{"flags": [\n\t{"key": "b", "state": "ENABLED", "variants": {"v": 2}, "defaultVariant": "v"}\n]}\n'
    flat = '{\n  "a": {"enabled": true,  "rollout": 5},\n  "b": {"enabled": false}\n}'
    after = edited(flat, lambda d: apply_set(d, SetChange("b", simple={"enabled": True}), fractional="v2", where="f"))
    assert after == '{\n  "a": {"enabled": true,  "rollout": 5},\n  "b": {\n    "enabled": true\n  }\n}'


def test_what_splicing_cannot_do_is_left_to_a_full_encode():
    duplicate = '{"flags": {"a": {"enabled": true}, "a": {"enabled": false}}}'
    old = json.loads(duplicate)
    new = apply_set(old, SetChange("a", simple={"enabled": True}), fractional="v2", where="f")
    assert splice(duplicate, old, new, indent=None, ensure_ascii=False) is None
    assert json.loads(render(duplicate, old, new, detect_layout(duplicate))) == new
    empty = '{"flags": {}}'
    old = json.loads(empty)
    new = apply_set(old, SetChange("a", simple={"enabled": True}), fractional="v2", where="f")
    assert json.loads(render(empty, old, new, detect_layout(empty))) == new

_keys = st.text(alphabet="abcxyz_-é\"\\ ", min_size=1, max_size=6)
_simple = st.fixed_dictionaries({"enabled": st.booleans()}, optional={
    "rollout_percentage": st.one_of(st.none(), st.integers(0, 100)), "allowed_users": st.lists(st.text(max_size=4), max_size=3)})


@settings(max_examples=150, deadline=None)
@given(flags=st.dictionaries(_keys, _simple, min_size=1, max_size=5), indent=st.sampled_from([None, 0, 1, 2, 4, "\t"]),
       target=_keys, enabled=st.booleans(), delete=st.booleans(), newline=st.booleans())
def test_any_edit_of_any_layout_decodes_to_the_edited_document_in_order(flags, indent, target, enabled, delete, newline):
    text = json.dumps({"flags": flags}, indent=indent) + ("\n" if newline else "")
    old = json.loads(text)
    if delete:
        if target not in flags:
            return
        new = apply_delete(old, target, where="f")
    else:
        new = apply_set(old, SetChange(target, simple={"enabled": enabled}), fractional="v2", where="f")
    out = render(text, old, new, detect_layout(text)).decode()
    assert list(json.loads(out)["flags"].items()) == list(new["flags"].items())
    assert out.endswith("\n") == newline
    untouched = [k for k in flags if k != target]
    if indent is not None and untouched and "\n" in text:
        # Each untouched flag's text is still there as it was written.
        first = json.dumps({k: flags[k] for k in untouched[:1]}, indent=indent)
        block = first[1:-1].strip("\n")
        assert block.split("\n")[0].strip() in out
