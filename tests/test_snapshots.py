"""Snapshots of every screen (pytest-textual-snapshot), drawn from fixed run records on disk.

The runs are written through the engine's own record types with fixed ids, times, logs and
metrics, so every frame is the same from one run to the next; the screens read them as
they read any run. Update after an intended change with ``pytest tests/test_snapshots.py
--snapshot-update`` and look at the SVGs before committing them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList, TabbedContent

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.cluster import ClusterScreen
from clusterdeck.app.tui.compare import CompareScreen
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.newrun import NewRunScreen
from clusterdeck.app.tui.panels import LogPanel
from clusterdeck.app.tui.plots import PlotsPanel
from clusterdeck.jobs import atomic
from clusterdeck.jobs.cluster import ClusterView, parse_sinfo, parse_squeue
from clusterdeck.jobs.records import (
    Attempt,
    FinalState,
    JobRef,
    PartStatus,
    RunRecord,
    StepRecord,
    save_record,
    save_status,
)
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runspec import validate
from tests.conftest import until

ROOT = Path("/tmp/clusterdeck-snapshots")  # a fixed path: it shows in the frames
T0 = 1_795_000_000.0
NOT_A_PID = "4000000000"  # the local job's pid: no such process, so its parts' own status files speak
LOG = """\
[rank 0] train: 2 shards, 96 samples, 12 steps per epoch
step 12  epoch 1.00  loss 2.0412  lr 0.0500  1210 img/s  data wait 3%
epoch 1  val_loss 1.9114  top1 0.3750  top5 0.8333
step 24  epoch 2.00  loss 1.7215  lr 0.0250  1187 img/s  data wait 2%
Traceback (most recent call last):
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB
NCCL WARN Net : Connection closed by remote peer
step 36  epoch 3.00  loss nan  lr 0.0125  1204 img/s  data wait 2%
train main completed
"""
SINFO = """\
cpu*|cpu01|idle|(null)|gpu:0|up|
cpu*|cpu02|mixed|(null)|gpu:0|up|
gpu|gpu01|mixed|gpu:a100:8(S:0-1)|gpu:a100:3(IDX:0-2)|up|
gpu|gpu02|idle|gpu:a100:8(S:0-1)|gpu:a100:0(IDX:N/A)|up|
gpu|gpu03|drained|gpu:a100:8(S:0-1)|gpu:a100:0(IDX:N/A)|up|
"""
SQUEUE = """\
8812|RUNNING|gpu|2:13:05|2-00:00:00|1|gpu01|cd-20261122-101500-aaaaaa-train
8813|PENDING|gpu|0:00|1:00:00|1|(Dependency)|cd-20261122-101500-aaaaaa-evaluate
"""


def make_run(
    root: Path, run_id: str, name: str, lr: float, epochs: int, top1: list[float], *, gpu: bool = False
) -> RunPaths:
    """A finished run on node01, rank 0: its record and status, a log, 12 train records per epoch and an epoch record
    each, 30 s of telemetry; ``gpu``: a CUDA rank's too (NVML's used, torch's reserved and allocated)."""
    paths = RunPaths(root / run_id)
    paths.root.mkdir(parents=True)
    table = {"name": name, "train": {"train_shards": "/data/shards", "lr": lr, "epochs": epochs, "model": "resnet18"}}
    atomic.write_json(paths.spec, validate(table, check_paths=False).model_dump(mode="json"))
    created, ended = T0 + 60 * len(top1), T0 + 60 * len(top1) + 754
    job = JobRef(job_id=NOT_A_PID, role="main", submitted_at=created, parts=["main"], pid_started_at=created)
    record = RunRecord(
        run_id=run_id,
        name=name,
        created_at=created,
        executor="local",
        steps=[StepRecord(name="train", attempts=[Attempt(number=1, submitted_at=created, jobs=[job])])],
        final=FinalState(state="COMPLETED", ended_at=ended, steps={"train": "COMPLETED"}),
    )
    save_record(paths, record)
    steps = 12 * epochs
    save_status(
        paths,
        PartStatus(
            step="train",
            attempt=1,
            part="main",
            state="COMPLETED",
            node="node01",
            job_id=NOT_A_PID,
            started_at=created + 2,
            ended_at=ended,
            exit_code=0,
            progress={"step": steps, "steps_total": steps, "images_per_s": 1204.0, "best_top1": max(top1)},
        ),
    )
    paths.submitit.mkdir()
    (paths.submitit / f"{NOT_A_PID}_0_log.out").write_text(LOG)
    base = {"node": "node01", "rank": 0, "attempt": 1}
    records = []
    for step in range(1, steps + 1):
        records.append(
            {
                "time": created + step,
                "kind": "train",
                **base,
                "step": step,
                "epoch": step / 12,
                "loss": 2.3 / (1 + step / 10),
                "lr": lr,
                "images_per_s": 1150.0 + 10 * (step % 7),
                "data_wait_fraction": 0.02 + 0.01 * (step % 3),
            }
        )
        if step % 12 == 0:
            k = step // 12 - 1
            records.append(
                {
                    "time": created + step + 0.5,
                    "kind": "epoch",
                    **base,
                    "epoch": k + 1,
                    "train_loss": 2.3 / (1 + step / 10),
                    "top1": top1[k],
                    "top5": min(1.0, top1[k] + 0.4),
                    "val_loss": 2.1 - top1[k],
                }
            )
    paths.metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    paths.telemetry_dir.mkdir()
    telemetry = [
        {
            "time": created + s,
            "kind": "system",
            **base,
            "interval_s": 1.0,
            "cpu_pct": 180.0,
            "rss_mb": 2100.0,
            "read_mb_s": 0.0,
            "write_mb_s": 0.5,
            "data_mb_s": 40.0 + s % 5,
            "data_samples_s": 1150.0 + 10 * (s % 4),
            "disk_read_mb_s": 42.0 + s % 3,
        }
        for s in range(1, 31)
    ]
    gpus = [
        {"time": created + s, "kind": "gpu", **base, "gpu": 0, "allocated_mb": 9_000.0 + 40 * s,
         "reserved_mb": 12_000.0, "peak_mb": 10_500.0, "used_mb": 14_300.0 + 10 * s, "total_mb": 80_000.0,
         "util_pct": 80.0 + s % 9}
        for s in range(1, 31) if gpu
    ]  # fmt: skip
    telemetry = sorted(telemetry + gpus, key=lambda r: r["time"])
    (paths.telemetry(NOT_A_PID, 0)).write_text("".join(json.dumps(r) + "\n" for r in telemetry))
    return paths


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[RunPaths]:
    shutil.rmtree(ROOT, ignore_errors=True)
    monkeypatch.setenv("CLUSTERDECK_HOME", str(ROOT / "home"))  # no user templates: only the built-in ones
    monkeypatch.setenv("XDG_CONFIG_HOME", str(ROOT / "xdg"))  # no user config: Textual's default theme
    monkeypatch.setattr(time, "strftime", lambda *_: "12:00:00")  # the "as of" clocks of the runs and cluster
    return [
        make_run(ROOT / "runs", "20261122-101500-aaaaaa", "resnet18-lr0.05", 0.05, 3, [0.375, 0.52, 0.61]),
        make_run(ROOT / "runs", "20261122-111500-bbbbbb", "resnet18-lr0.1", 0.1, 2, [0.41, 0.58]),
    ]


Snap = Callable[..., bool]


def settle(condition: Callable[[Any], object]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: condition(pilot.app), timeout=30)
        await pilot.pause(0.3)

    return run_before


def test_runs_list(runs: list[RunPaths], snap_compare: Snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count == 2)
        await pilot.press("space")  # one run marked for comparison
        table = pilot.app.screen.query_one(DataTable)
        assert str(table.get_row_at(0)[0]).startswith("●")
        await pilot.pause(0.2)

    assert snap_compare(make_app(ROOT / "runs"), terminal_size=(100, 24), run_before=run_before)


SIZES = {"80x24": (80, 24), "120x36": (120, 36)}


def records_in(paths: RunPaths) -> int:
    return sum(1 for path in (paths.metrics, paths.telemetry(NOT_A_PID, 0)) for _ in path.open())


async def open_detail(pilot: Pilot[Any], paths: RunPaths, tab: str) -> RunDetailScreen:
    """The run's detail, every record drawn and its state read (so the empty tabs say why), on ``tab``."""
    app = pilot.app
    app.push_screen(RunDetailScreen(str(paths.root)))
    await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.view is not None)
    screen = app.screen
    assert isinstance(screen, RunDetailScreen)
    await until(pilot, lambda: any("completed" in line for _, line in screen.query_one(LogPanel).lines))
    await until(pilot, lambda: screen.live.records == records_in(paths))
    await until(pilot, lambda: screen.view is not None and screen.view.ended and screen.consumed.is_set())
    screen.query_one(TabbedContent).active = tab
    return screen


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tab", ["log-tab", "io-tab", "gpu-tab", "curves-tab", "stage-tab"])
def test_run_detail(runs: list[RunPaths], snap_compare: Snap, tab: str, size: str) -> None:
    """A finished CPU run's every tab; its GPU tab says why it has no chart."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_detail(pilot, runs[0], tab)
        await pilot.pause(0.3)

    assert snap_compare(make_app(ROOT / "runs"), terminal_size=SIZES[size], run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_run_detail_gpu(snap_compare: Snap, size: str, runs: list[RunPaths]) -> None:
    """A GPU run's memory (NVML's used, torch's reserved and allocated, up to the device's total) and utilisation."""
    paths = make_run(ROOT / "runs", "20261122-121500-cccccc", "resnet18-gpu", 0.1, 1, [0.4], gpu=True)

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await open_detail(pilot, paths, "gpu-tab")
        assert list(screen.query_one("#gpu", PlotsPanel).charts) == ["GPU node01:0 memory", "GPU utilisation"]
        await pilot.pause(0.3)

    assert snap_compare(make_app(ROOT / "runs"), terminal_size=SIZES[size], run_before=run_before)


def test_run_detail_curves_by_wall_time(runs: list[RunPaths], snap_compare: Snap) -> None:
    """``x`` puts the charts on the wall time since the run's first record."""

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await open_detail(pilot, runs[0], "curves-tab")
        await pilot.press("x")
        assert screen.x_axis == "time" and all(
            c.axis == "time" for c in screen.query_one("#curves", PlotsPanel).charts.values()
        )
        await pilot.pause(0.3)

    assert snap_compare(make_app(ROOT / "runs"), terminal_size=(80, 24), run_before=run_before)


def test_new_run_form_with_a_problem(runs: list[RunPaths], snap_compare: Snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        app.push_screen(NewRunScreen({"name": "bad", "train": {"train_shards": "/data/shards", "epochs": "ninety"}}))
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.checked is not None)
        await until(pilot, lambda: app.screen.query_one("#templates", OptionList).option_count > 0)
        await pilot.pause(0.3)

    assert snap_compare(make_app(ROOT / "runs"), terminal_size=(100, 30), run_before=run_before)


def test_compare(runs: list[RunPaths], snap_compare: Snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        app.push_screen(CompareScreen([str(p.root) for p in runs]))
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        await pilot.pause(0.3)

    assert snap_compare(make_app(ROOT / "runs"), terminal_size=(100, 40), run_before=run_before)


def test_cluster(runs: list[RunPaths], snap_compare: Snap, monkeypatch: pytest.MonkeyPatch) -> None:
    """sinfo and squeue's answers are fixed here (a GPU cluster); tests/test_cluster.py asks the real ones."""
    view = ClusterView(partitions=parse_sinfo(SINFO), jobs=parse_squeue(SQUEUE), error="")
    monkeypatch.setattr("clusterdeck.jobs.cluster.cluster_view", lambda *a, **k: view)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        app.push_screen(ClusterScreen())
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, ClusterScreen)
                and any(t.row_count for t in app.screen.query("#my-jobs").results(DataTable))
            ),
        )
        await pilot.pause(0.3)

    assert snap_compare(make_app(ROOT / "runs"), terminal_size=(80, 24), run_before=run_before)
