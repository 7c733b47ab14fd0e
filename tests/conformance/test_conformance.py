"""flagd's own evaluation suites, run against flagsock's engine: one test item per scenario example.

* every scenario of ``flagd-testbed/evaluator/gherkin/*.feature`` against
  ``evaluator/flags/testkit-flags.json``;
* the evaluation features of the provider suite (``gherkin/targeting.feature``,
  ``evaluation.feature`` with its zero-value scenarios, ``disabled.feature``, ``metadata.feature``)
  against ``flagd-testbed/flags/*.json`` merged in name order, later winning. As in the testbed's
  own image, ``selector*`` files stay out of that merge (they are flag sets of their own, reached
  with the scenarios' ``selector`` option).

The testbed is read from ``../shared/conformance`` next to the project; without it, this module
skips with a message. The session summary line comes from ``conftest.py``.
"""

from __future__ import annotations


import pytest

from tests.helpers import CONFORMANCE

from .gherkin import Scenario, parse_feature
from .steps import Suite, run, skip_reason

TESTBED = CONFORMANCE / "flagd-testbed"
PROVIDER_FEATURES = ("targeting.feature", "evaluation.feature", "disabled.feature", "metadata.feature",
                     "selector.feature")


def _cases() -> list:
    if not TESTBED.is_dir():
        return [pytest.param(None, None, id="testbed-missing",
                             marks=pytest.mark.skip(reason=f"flagd testbed not found at {TESTBED}"))]
    evaluator = Suite("evaluator", (TESTBED / "evaluator" / "flags" / "testkit-flags.json",))
    flag_dir = TESTBED / "flags"
    provider = Suite("provider", tuple(sorted(p for p in flag_dir.glob("*.json") if not p.name.startswith("selector"))),
                     selectable=flag_dir)
    cases = []
    for feature in sorted((TESTBED / "evaluator" / "gherkin").glob("*.feature")):
        cases += [pytest.param(s, evaluator, id=f"evaluator/{s.id}") for s in parse_feature(feature)]
    for name in PROVIDER_FEATURES:
        cases += [pytest.param(s, provider, id=f"provider/{s.id}") for s in parse_feature(TESTBED / "gherkin" / name)]
    return cases


@pytest.mark.parametrize(("scenario", "suite"), _cases())
def test_flagd_scenario(scenario: Scenario, suite: Suite) -> None:
    reason = skip_reason(scenario)
    if reason:
        pytest.skip(reason)
    run(scenario, suite)
