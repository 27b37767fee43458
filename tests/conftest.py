"""Shared fixtures: a temporary runs root, small sample datasets, and the real CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from textual.pilot import Pilot

from clusterdeck.jobs.sample_data import SampleData, make_devkit, make_sample_data, make_train_tar, make_val_tar
from tests.ci_skips import (  # the hooks, found here by pytest: under CI a skip fails the run
    pytest_collectreport,  # noqa: F401
    pytest_runtest_logreport,  # noqa: F401
    pytest_sessionfinish,  # noqa: F401
    pytest_terminal_summary,  # noqa: F401
    under_ci,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> SampleData:
    """Six classes, 12 train and 4 val images each: small enough to shard in well under a second."""
    return make_sample_data(tmp_path_factory.mktemp("sample"), classes=6, train_per_class=12, val_per_class=4, seed=1)


@pytest.fixture(scope="session")
def ilsvrc(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample set as the three files ImageNet is downloaded as: the train and val tars, the devkit."""
    root = tmp_path_factory.mktemp("ilsvrc")
    return {
        "train": make_train_tar(sample_data, root / "ILSVRC2012_img_train.tar"),
        "val": make_val_tar(sample_data, root / "ILSVRC2012_img_val.tar"),
        "devkit": make_devkit(sample_data, root / "ILSVRC2012_devkit_t12.tar.gz"),
    }


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test has a config directory of its own (``~/.config/clusterdeck``): the app saves the theme chosen
    there, and the user's own config (theme, [defaults]) must neither change a test nor be changed by one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """CLUSTERDECK_HOME for this test: its own runs root."""
    path = tmp_path / "home"
    monkeypatch.setenv("CLUSTERDECK_HOME", str(path))
    yield path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """The installed console script, as a user runs it (a real process, real exit code)."""
    proc = subprocess.run(
        [sys.executable, "-m", "clusterdeck.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def copy_with_stuck_file(data: SampleData, tmp_path: Path, class_rank: int, k: int) -> tuple[SampleData, Path]:
    """A copy of the sample data in which one train image is a FIFO: reading it blocks, as on a hung filesystem."""
    root = tmp_path / "data"
    shutil.copytree(data.root, root)
    wnid = sorted(data.wnids)[class_rank]
    stuck = root / "train" / wnid / f"{wnid}_{k}.JPEG"
    stuck.unlink()
    os.mkfifo(stuck)
    return SampleData(root, data.wnids), stuck


def shard_spec(data: SampleData, output: Path, *, name: str = "shards", extra: str = "") -> str:
    return f"""
name = "{name}"
[cluster]
executor = "local"
[shard]
output = "{output}"
shard_size_mb = 0.3
seed = 0
workers = 2
{extra}
[shard.train]
input = "{data.train}"
format = "imagefolder"
[shard.val]
input = "{data.val}"
format = "ilsvrc-val"
ground_truth = "{data.ground_truth}"
synsets = "{data.synsets}"
"""


@pytest.fixture(scope="session")
def sample_shards(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample data as a shard set (train and val), written once by the real shard step."""
    from clusterdeck.jobs.runspec import load_spec
    from clusterdeck.jobs.shard.step import run_shard_part

    root = tmp_path_factory.mktemp("shards")
    spec_file = root / "spec.toml"
    spec_file.write_text(shard_spec(sample_data, root / "set"))
    spec = load_spec(spec_file)
    assert spec.shard is not None
    run_shard_part(spec.shard, "main", lambda progress: None)
    return root / "set"


@pytest.fixture(scope="session")
def learnable_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """More sample data than ``sample_shards``: 6 classes × 50 train, 20 val each, enough to learn from."""
    from clusterdeck.jobs.runspec import load_spec
    from clusterdeck.jobs.shard.step import run_shard_part

    root = tmp_path_factory.mktemp("learnable")
    data = make_sample_data(root / "data", classes=6, train_per_class=50, val_per_class=20)
    (root / "spec.toml").write_text(shard_spec(data, root / "set"))
    spec = load_spec(root / "spec.toml")
    assert spec.shard is not None
    with contextlib.redirect_stdout(io.StringIO()):
        run_shard_part(spec.shard, "main", lambda progress: None)
    return root / "set"


# A [train] configuration small enough for a 2-core machine: resnet18 at 32 px, fp32, a few steps per epoch.
SMALL_TRAIN: dict[str, object] = {
    "model": "resnet18",
    "image_size": 32,
    "epochs": 2,
    "batch_size": 8,
    "lr": 0.05,
    "amp": "off",
    "workers": 2,
    "log_every_steps": 1,
    "checkpoint_every_min": 10,
}


def train_section(shards: Path | None = None, **overrides: object) -> str:
    """SMALL_TRAIN as TOML, with ``train_shards`` and overrides (``resources`` and ``stage`` as dicts)."""
    values = dict(SMALL_TRAIN)
    if shards is not None:
        values["train_shards"] = str(shards)
    values.update(overrides)
    lines = ["[train]"] + [f"{k} = {_toml(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for name, table in values.items():
        if isinstance(table, dict):
            lines += [f"[train.{name}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def require_slurm(wait_s: float = 60) -> None:
    """Skips the calling tests unless the cluster of tests/cluster/slurm-up.sh is up; under CI, fails them.

    A controller that is restarting (a changed slurm.conf) or a node that is coming back answers
    within ``wait_s``: only a cluster still down after that counts as missing.
    """
    if shutil.which("sbatch") is None:
        missing("SLURM is not installed here; run tests/cluster/slurm-up.sh as root")
    deadline = time.monotonic() + (0 if _SLURM_DOWN else wait_s)  # waited out once: the next test asks once
    while True:
        state = slurm_node_states()
        if any(s.startswith(("idle", "mixed", "alloc", "completing")) for s in state):
            _SLURM_DOWN.clear()
            return
        if time.monotonic() > deadline:
            _SLURM_DOWN.append(True)
            missing(f"no SLURM node is up (sinfo: {state}); run tests/cluster/slurm-up.sh as root")
        time.sleep(1)


_SLURM_DOWN: list[bool] = []


def slurm_node_states() -> list[str]:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout
    except subprocess.TimeoutExpired:
        return []
    return out.split()


def needs_root(what: str) -> None:
    """``what`` (a mount, ``setpriv``) needs root: not root is a missing component, see ``missing``."""
    if os.geteuid() != 0:
        missing(f"needs root: {what}")


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    """The records of ``kind`` in a metrics file written so far: a line still being appended (no newline
    yet) is left for the next read, so a poll never reads half a record."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    return [r for r in (json.loads(x) for x in lines if x.endswith("\n")) if r["kind"] == kind]


def missing(reason: str) -> NoReturn:
    """A real component this test needs is not there: a skip here, a failure under CI (see ``tests/ci_skips.py``)."""
    if under_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def show(run_id: str) -> dict[str, Any]:
    """``clusterdeck show RUN --json`` of a run that may have failed: its view."""
    result = run_cli("show", run_id, "--json")
    assert result.code in (0, 1), result.err
    return json.loads(result.out)


def wait_for(what: str, condition: Callable[[], object], timeout: float) -> None:
    """Polls ``condition`` (a file, a record, a state): never a fixed sleep. ``timeout`` only bounds a broken run."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)


def noted(app: Any) -> list[str]:
    """Every notification's message from now on. The app's own list drops a notification when it times out
    (seconds), which a loaded machine can outlast between the notify and a test's check; this list keeps them."""
    seen: list[str] = []
    notify = app.notify

    def record(message: object, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = record
    return seen


async def until(pilot: Pilot[Any], condition: Callable[[], object], timeout: float = 60) -> None:
    """Lets the app run until ``condition()`` holds; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.1)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real sshd on 127.0.0.1 for one test module (tests/sshd.py), stopped after it."""
    from tests.sshd import serve

    yield from serve(tmp_path_factory.mktemp("sshd"))


def assert_same_as_one_local_task(spec: Path, out: Path, local_out: Path) -> None:
    """The shard set at ``out`` (from array tasks and a merge) is byte for byte the one a single local task
    writes from the same spec to ``local_out``."""
    from clusterdeck.jobs.runspec import load_spec
    from clusterdeck.jobs.shard.step import run_shard_part

    local = load_spec(spec, [f'shard.output="{local_out}"', "shard.resources.array_tasks=1"]).shard
    assert local is not None
    run_shard_part(local, "main", lambda _: None)
    assert (out / "index.json").read_bytes() == (local_out / "index.json").read_bytes()
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == {
        p.name: p.read_bytes() for p in local_out.glob("*.tar")
    }


def release_requeued(job_id: str) -> None:
    """Starts a requeued job now instead of after the two minutes SLURM holds it (its BeginTime), as an operator
    would, once its first run is over by more than a whole second.

    The hold is there for a reason: the node revokes the first run's job credential as of the second the requeue
    took effect, and a run started within that second is killed at once ("Killing non-startable batch job: Job
    credential revoked", exit 1). The end of the REQUEUED run comes from ``sacct``; until it is there, nothing is
    released.
    """
    out = subprocess.run(
        ["sacct", "-X", "-D", "-n", "-P", "-o", "State,End", "-j", job_id], capture_output=True, text=True
    ).stdout
    ends = [line.split("|")[1] for line in out.splitlines() if line.startswith("REQUEUED|")]
    try:
        requeued_at = datetime.fromisoformat(ends[-1]) if ends else None
    except ValueError:  # "Unknown" while the accounting database catches up
        requeued_at = None
    if requeued_at is not None and datetime.now() > requeued_at + timedelta(seconds=3):
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], capture_output=True)


def end_releasing_requeues(run_id: str, job_id: str, deadline: float) -> dict[str, Any]:
    """Polls the run until it has ended, releasing its job each time SLURM holds it after a requeue
    (``release_requeued``); the view it ended with. ``deadline`` (``time.monotonic()``) only bounds a broken run."""
    while (view := show(run_id))["state"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        assert time.monotonic() < deadline, f"the run did not end: {view}"
        release_requeued(job_id)
        time.sleep(1)
    return view
