"""bench/gpu_check.py as a person runs it without a GPU: one table, every row, the CPU rows passing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

GPU_ONLY = {"a", "c", "d", "g"}
ON_CPU = {"b", "e", "f", "h"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="what the check prints where there is no GPU")
def test_the_gpu_check_runs_its_cpu_rows_and_marks_the_others() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--cpu"], cwd=REPO, capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {m[1]: (m[2], m[3]) for m in re.finditer(r"^([a-h])   .*?  (pass|FAIL|no GPU) *(.*)$", proc.stdout, re.M)}
    assert sorted(rows) == list("abcdefgh"), proc.stdout
    assert {r for r, (result, _) in rows.items() if result == "no GPU"} == GPU_ONLY, proc.stdout
    assert {r for r, (result, _) in rows.items() if result == "pass"} == ON_CPU, proc.stdout
    assert "truncated: named, corrupt: named" in rows["b"][1]
    assert "weights equal" in rows["f"][1] and "stop at 5" in rows["f"][1]
    assert rows["e"][1].startswith("gloo: max, sum")


def test_without_a_gpu_and_without_cpu_the_check_says_so() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2 and "no CUDA device here; --cpu runs the rows that need none" in proc.stderr
