"""Under CI (``CI=true``) a skipped test fails the run: a missing real component must not pass as green.

Locally a skip says why a test could not run here (no SLURM, no sshd) and the run still passes;
on CI, where ``.ci/run`` brings every component up, a skip means one of them broke. The hooks
are pytest's: ``tests/conftest.py`` imports them, and ``pytest -p tests.ci_skips`` loads them alone.
"""

from __future__ import annotations

import os

import pytest

_SKIPPED: list[tuple[str, str]] = []


def under_ci() -> bool:
    return os.environ.get("CI") == "true"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):  # an expected failure is not a skip
        _note(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped at import (pytest.skip(allow_module_level=True))
        _note(report)


def _note(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    _SKIPPED.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if under_ci() and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if under_ci() and _SKIPPED:
        terminalreporter.section("skipped under CI=true: each fails the run", red=True)
        for nodeid, reason in _SKIPPED:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}", red=True)
