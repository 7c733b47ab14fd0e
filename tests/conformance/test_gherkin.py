"""The Gherkin reader the conformance run depends on."""

from __future__ import annotations

import pytest

from .gherkin import GherkinError, parse_feature, split_cells

FEATURE = '''@suite
Feature: Things
  Free text describing the feature.

  Background:
    Given an evaluator

  # a comment
  @one
  Scenario: Plain
    When something happens
    Then the table holds
      | key | value |
      | a   | 1     |

  Scenario Outline: Outline <name>
    Given a flag "<name>"
    Then the value is "<value>"

    @v2
    Examples: first
      | name | value          |
      | x    | {\\"a\\": 1}   |
      | y    | a\\|b          |

    Examples:
      | name | value |
      | z    |       |
'''


def test_scenarios_get_background_steps_tags_and_tables(tmp_path):
    path = tmp_path / "things.feature"
    path.write_text(FEATURE)
    plain, *outline = parse_feature(path)
    assert plain.name == "Plain" and plain.tags == {"@suite", "@one"}
    assert [s.text for s in plain.steps] == ["an evaluator", "something happens", "the table holds"]
    assert plain.steps[-1].table == (("key", "value"), ("a", "1"))
    assert [(s.name, s.steps[1].text, s.steps[2].text, sorted(s.tags)) for s in outline] == [
        ("Outline x", 'a flag "x"', 'the value is "{"a": 1}"', ["@suite", "@v2"]),
        ("Outline y", 'a flag "y"', 'the value is "a|b"', ["@suite", "@v2"]),
        ("Outline z", 'a flag "z"', 'the value is ""', ["@suite"]),
    ]
    assert outline[0].example == "first #1" and outline[2].example == "Examples #1"


def test_cell_escapes_are_undone():
    assert split_cells(r"| a\|b | \\ | line\nbreak | \"q\" |") == ("a|b", "\\", "line\nbreak", '"q"')


def test_a_table_row_without_a_step_is_an_error(tmp_path):
    path = tmp_path / "bad.feature"
    path.write_text("Feature: x\n  | a |\n")
    with pytest.raises(GherkinError, match="bad.feature:2"):
        parse_feature(path)
