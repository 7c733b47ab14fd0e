"""Counts the flagd scenarios and prints one summary line at the end of the session."""

from __future__ import annotations

from collections import Counter

import pytest

#: Test function name -> how its scenarios are evaluated, for the summary lines.
_RUNS = {"test_flagd_scenario[": "engine", "test_flagd_scenario_through_the_socket[": "socket"}
_counts: dict[str, Counter[str]] = {how: Counter() for how in _RUNS.values()}
_skips: dict[str, Counter[str]] = {how: Counter() for how in _RUNS.values()}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    how = next((h for prefix, h in _RUNS.items() if prefix in report.nodeid), None)
    if how is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _counts[how][report.outcome] += 1
        if report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            _skips[how][reason.removeprefix("Skipped: ")] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    for how, counts in _counts.items():
        if not sum(counts.values()):
            continue
        run = counts["passed"] + counts["failed"]
        reasons = "; ".join(f"{n} {why}" for why, n in _skips[how].most_common())
        terminalreporter.write_line(
            f"conformance ({how}): {run} scenarios run, {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped ({reasons or 'none'})"
        )

