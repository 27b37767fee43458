"""Under CI=true a skipped test fails the run, and a missing SLURM fails its tests instead of skipping them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_slurm

INNER = """
import pytest

def test_runs():
    pass

def test_needs_a_component():
    pytest.skip("no such component here")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    assert False
"""

NOT_HERE = 'import pytest\npytest.skip("no module here", allow_module_level=True)\n'


def inner_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "test_not_here.py").write_text(NOT_HERE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(REPO)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider", "-rs", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_the_run_under_ci_and_is_named(tmp_path: Path) -> None:
    run = inner_pytest(tmp_path, "true")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert "SKIPPED test_inner.py::test_needs_a_component: no such component here" in run.stdout
    assert "SKIPPED test_not_here.py: no module here" in run.stdout
    assert "test_expected_to_fail" not in run.stdout.split("skipped under CI=true")[1]  # an xfail is no skip


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_skip_passes_the_run_elsewhere(tmp_path: Path, ci: str | None) -> None:
    run = inner_pytest(tmp_path, ci)
    assert run.returncode == pytest.ExitCode.OK, run.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in run.stdout and "skipped under CI" not in run.stdout


def test_no_slurm_fails_under_ci_and_skips_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: SLURM is not installed here"):
        require_slurm()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="SLURM is not installed here"):
        require_slurm()
