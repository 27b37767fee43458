"""The core install (``pip install clusterdeck``, no ``train`` extra) in a fresh virtual environment, as on a laptop
or a login node: everything but training works, and what trains says which extra it needs (exit 2).

The environment is made for real with pip from the package registry (or pip's cache), from this checkout, with the
core dependencies of pyproject.toml only; ``import torch`` fails in it, which the first test checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import REPO, shard_spec, train_section
from tests.sshd import Laptop, Sshd

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The core environment's python."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(REPO)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-3000:]
    yield python


def cli(core: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(core), "-m", "clusterdeck.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_torch_is_not_there(core: Path) -> None:
    for module in ("torch", "torchvision", "webdataset"):
        probe = subprocess.run([str(core), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    assert "clusterdeck 0." in cli(core, "--version").stdout


def test_everything_but_training_works_and_training_names_the_extra(core: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    data = tmp_path / "data"
    made = cli(core, "sample-data", str(data), "--classes", "3", "--train-per-class", "8", "--val-per-class", "2")
    assert made.returncode == 0, made.stderr
    sample = SampleData(data, [line.split()[0] for line in (data / "synsets.txt").read_text().splitlines()])
    spec = tmp_path / "shard.toml"
    spec.write_text(shard_spec(sample, tmp_path / "shards", name="core-shards"))
    submitted = cli(core, "--runs-root", str(runs), "submit", str(spec), "--wait", "--json")
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    listed = json.loads(cli(core, "--runs-root", str(runs), "ls", "--json").stdout)
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    shown = json.loads(cli(core, "--runs-root", str(runs), "show", run_id, "--json").stdout)
    assert shown["state"] == "COMPLETED"
    inspected = cli(core, "inspect", str(tmp_path / "shards"), "--json")
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["verify"]["ok"] > 0, inspected.stderr
    staged = cli(core, "stage", str(tmp_path / "shards"), "--to", str(tmp_path / "ssd"), "--json")
    assert staged.returncode == 0 and json.loads(staged.stdout)["copied"] > 0, staged.stderr
    exported = cli(core, "export", str(tmp_path / "shards"), "--out", str(tmp_path / "sysds"), "--samples", "8")
    assert exported.returncode == 0, exported.stderr
    assert any((tmp_path / "sysds").iterdir())

    app = subprocess.run(
        [str(core), str(REPO / "tests" / "scripts" / "core_app.py"), str(runs), run_id],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert app.returncode == 0, app.stderr[-3000:]
    assert app.stdout.split() == ["ok", "torch", "torchvision", "webdataset"]  # none of them was imported

    train = tmp_path / "train.toml"
    train.write_text('name = "core-train"\n[cluster]\nexecutor = "local"\n' + train_section(tmp_path / "shards"))
    refused = cli(core, "--runs-root", str(runs), "submit", str(train))
    assert refused.returncode == 2, refused.stderr
    assert "[train] needs torch and torchvision" in refused.stderr and "clusterdeck[train]" in refused.stderr
    assert "Traceback" not in refused.stderr
    demo = cli(core, "--runs-root", str(runs), "demo")
    assert demo.returncode == 2 and "the demo needs torch" in demo.stderr, demo.stderr
    after = json.loads(cli(core, "--runs-root", str(runs), "ls", "--json").stdout)
    assert [r["run_id"] for r in after["runs"]] == [run_id]  # nothing was written for the refused ones


def test_a_laptop_with_the_core_install_drives_the_cluster_over_ssh(core: Path, sshd: Sshd, tmp_path: Path) -> None:
    """The laptop runs the core install; the login node (this machine over the real sshd) runs the full one."""
    laptop = Laptop(tmp_path / "laptop", tmp_path / "runs", sshd)
    (laptop.home / ".ssh").mkdir(parents=True, mode=0o700)
    laptop.known_hosts.write_text(sshd.host_key_line())
    laptop.profile()
    proc = subprocess.run(
        [str(core), "-m", "clusterdeck.app.cli", "--host", "testcluster", "ls", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=laptop.env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"] == []
