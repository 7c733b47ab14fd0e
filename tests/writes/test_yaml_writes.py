"""set and delete on a YAML flag file: written back as YAML, comments, key order and layout kept,
durably, and served."""

from __future__ import annotations

from tests.writes.conftest import ok, refused

COMMENTED = """\
# Flags of the checkout team. Reviewed in PR #123; keep the comments.
metadata:
  team: checkout   # owner of every flag below
flags:
  # The new flow, rolling out.
  new-checkout:
    state: ENABLED
    variants:
      'on': true    # quoted: a bare on is a YAML 1.1 boolean
      'off': false
    defaultVariant: 'off'
  # Kept off until the holidays.
  holiday-banner:
    state: DISABLED
    variants: {shown: true, hidden: false}
    defaultVariant: hidden
  legacy: {enabled: true}
"""


async def test_set_keeps_every_comment_and_the_order_and_is_served(start_agent, tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text(COMMENTED)
    running = await start_agent([path])
    sock = running.socket_path
    before = await ok(sock, {"op": "evaluate", "flag": "new-checkout"})
    assert before["value"] is False

    definition = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
    result = await ok(sock, {"op": "set", "flag": "new-checkout", "definition": definition})
    text = path.read_text()
    for comment in ("# Flags of the checkout team. Reviewed in PR #123; keep the comments.",
                    "team: checkout   # owner of every flag below", "# The new flow, rolling out.",
                    "# Kept off until the holidays.", "# quoted: a bare on is a YAML 1.1 boolean"):
        assert comment in text, (comment, text)
    assert text.index("new-checkout") < text.index("holiday-banner") < text.index("legacy")
    assert "holiday-banner:\n    state: DISABLED\n    variants: {shown: true, hidden: false}" in text
    served = await ok(sock, {"op": "evaluate", "flag": "new-checkout"})
    assert served["value"] is True and served["revision"] == result["revision"]

    # A new flag goes at the end; a delete removes only that flag's lines.
    await ok(sock, {"op": "set", "flag": "added", "enabled": True})
    await ok(sock, {"op": "delete", "flag": "holiday-banner"})
    text = path.read_text()
    assert "holiday-banner" not in text and "# Kept off until the holidays." not in text, text
    assert "    defaultVariant: 'on'\n  legacy: {enabled: true}\n" in text, text
    assert text.index("legacy") < text.index("added")
    assert "# Flags of the checkout team." in text and "# The new flow, rolling out." in text
    assert (await ok(sock, {"op": "evaluate", "flag": "added"}))["value"] is True
    assert (await refused(sock, {"op": "evaluate", "flag": "holiday-banner"}, "FLAG_NOT_FOUND"))


async def test_an_invalid_change_to_a_yaml_file_changes_nothing(start_agent, tmp_path):
    path = tmp_path / "flags.yml"
    path.write_text(COMMENTED)
    running = await start_agent([path])
    bad = {"state": "ENABLED", "variants": {"a": 1, "b": "two"}, "defaultVariant": "a"}
    message = await refused(running.socket_path, {"op": "set", "flag": "new-checkout", "definition": bad},
                            "INVALID_FLAG")
    assert "variants" in message
    assert path.read_text() == COMMENTED


async def test_a_yaml_file_that_no_longer_parses_refuses_writes_naming_yaml(start_agent, tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text(COMMENTED)
    running = await start_agent([path])
    broken = "flags: [unclosed\n"
    path.write_text(broken)
    message = await refused(running.socket_path, {"op": "set", "flag": "x", "enabled": True}, "INVALID_FLAG")
    assert "not valid YAML" in message
    assert path.read_text() == broken
