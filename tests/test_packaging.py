"""The wheel, installed as a user installs it (not editable) and run from outside the checkout: everything lives
under ``clusterdeck``, and the built-in templates come with it.

The wheel goes into a fresh virtual environment whose only other path is this environment's site-packages (for
torch and the rest, which are not what is tested): no checkout directory is on its path, no editable finder runs.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this checkout; returns its bin directory."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root), str(REPO)],
        check=True, capture_output=True, cwd=root,
    )  # fmt: skip
    wheel = next(root.glob("clusterdeck-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    here = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (purelib / "dependencies.pth").write_text("\n".join(sorted(here)) + "\n")  # a path line: no .pth in it runs
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    return venv / "bin"


def run(cwd: Path, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLUSTERDECK_PLUGINS")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, env={**clean, **(env or {})}, timeout=240,
        check=False,
    )  # fmt: skip


def test_the_wheel_installs_only_clusterdeck_and_runs_a_built_in_template(installed: Path, tmp_path: Path) -> None:
    python = installed / "python"
    where = run(tmp_path, python, "-c", "import clusterdeck.jobs as j, clusterdeck.app.cli; print(j.__file__)")
    assert where.returncode == 0, where.stderr
    assert not where.stdout.startswith(str(REPO)), where.stdout  # the installed copy, not the checkout
    probe_api = "import sys, clusterdeck as c; print(c.REQUEUE, c.__file__, 'torch' in sys.modules)"
    api = run(tmp_path, python, "-c", probe_api)  # the public API is the package clusterdeck itself
    assert api.returncode == 0, api.stderr
    code, where_api, torch_loaded = api.stdout.split()
    assert code == "75" and where_api.endswith("site-packages/clusterdeck/__init__.py") and torch_loaded == "False"
    for generic in ("app", "jobs", "templates", "api"):
        probe = run(tmp_path, python, "-c", f"import {generic}")
        assert probe.returncode != 0 and "No module named" in probe.stderr, (generic, probe.stdout)

    home = {"CLUSTERDECK_HOME": str(tmp_path / "home")}
    templates = run(
        tmp_path, python, "-c",
        "from clusterdeck.jobs.templates import list_templates\nfor t in list_templates(): print(t.source, t.path)",
        env=home,
    )  # fmt: skip
    built_in = [line.split(" ", 1)[1] for line in templates.stdout.splitlines() if line.startswith("built-in ")]
    assert any(p.endswith("clusterdeck/templates/sample-shards.toml") for p in built_in), templates
    assert not any(p.startswith(str(REPO)) for p in built_in)

    data = tmp_path / "sample"
    made = run(tmp_path, installed / "clusterdeck", "sample-data", data, "--classes", "3", env=home)
    assert made.returncode == 0, made.stderr
    env = {**home, "IMAGENET_ROOT": str(data), "IMAGENET_DEVKIT": str(data), "SCRATCH": str(tmp_path / "scratch")}
    done = run(tmp_path, installed / "clusterdeck", "submit", "sample-shards", "--wait", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    view = json.loads(done.stdout)
    assert view["state"] == "COMPLETED" and view["name"] == "sample-shards"
    assert (tmp_path / "scratch" / "sample-shards" / "index.json").is_file()
