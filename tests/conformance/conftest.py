"""Counts the flagd scenarios and prints one summary line at the end of the session."""

from __future__ import annotations

from collections import Counter

import pytest

_counts: Counter[str] = Counter()
_skips: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "test_flagd_scenario" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _counts[report.outcome] += 1
        if report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            _skips[reason.removeprefix("Skipped: ")] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if not sum(_counts.values()):
        return
    run = _counts["passed"] + _counts["failed"]
    reasons = "; ".join(f"{n} {why}" for why, n in _skips.most_common())
    terminalreporter.write_line(
        f"conformance: {run} scenarios run, {_counts['passed']} passed, {_counts['failed']} failed, "
        f"{_counts['skipped']} skipped ({reasons or 'none'})"
    )

