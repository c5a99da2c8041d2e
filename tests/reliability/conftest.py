"""Reliability suite plumbing: the ledger's JSON at session end, and soak tests kept out of quick runs.

Tests marked ``slow`` run only when asked for (``pytest -m slow tests/reliability``), so this folder
stays under a minute on a two-core machine even before the project's pytest settings deselect them.
"""

from __future__ import annotations

import time

import pytest
from reliability_support import LEDGER

_started = time.monotonic()
_results: dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr", default="") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with -m slow")
    for item in items:
        if "slow" in item.keywords and "reliability" in str(item.path):
            item.add_marker(skip)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "reliability" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "skipped" if report.skipped else "passed" if report.passed else "failed"
        _results[outcome] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not any(_results.values()):
        return
    LEDGER.write(tests=dict(_results), duration_s=round(time.monotonic() - _started, 1))
