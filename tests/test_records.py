"""Typed records: one parser for every reader; a record of an unknown kind or a newer major is skipped, not a crash."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.plots import PlotsPanel
from clusterdeck.app.watch import render
from clusterdeck.jobs.deck.local import LocalDeck
from clusterdeck.jobs.status import view_runs
from clusterdeck.jobs.tail.live import LiveRun
from clusterdeck.jobs.tail.records import Epoch, Evaluate, Gpu, Progress, Stage, System, Train, parse
from tests.conftest import run_cli, until
from tests.test_snapshots import NOT_A_PID, T0, make_run

BASE = {"time": T0 + 1000, "node": "node01", "rank": 0, "attempt": 1}
SYSTEM = {**BASE, "kind": "system", "cpu_pct": 180.0, "rss_mb": 2100.0, "read_mb_s": 3.0, "data_mb_s": 40.0}
NOT_READ = [
    {**BASE, "kind": "mystery", "value": 1},  # a kind this clusterdeck does not know
    {**BASE, "kind": "system/2", "cpu": {"pct": 180.0}},  # a newer major of a kind it knows
    {**BASE, "kind": "gpu", "gpu": "GPU-0"},  # another writer's gpu line: not a device index
    {**BASE, "kind": "train", "step": 3},  # a train record without its epoch and loss
]


def test_each_kind_reads_into_its_class_with_what_its_writer_left_out_as_none() -> None:
    train = parse({**BASE, "kind": "train", "step": 4, "epoch": 0.5, "loss": 2.0, "lr": 0.1, "images_per_s": 900})
    assert isinstance(train, Train) and (train.step, train.images_per_s, train.step_s) == (4, 900.0, None)
    epoch = parse({**BASE, "kind": "epoch", "epoch": 2, "train_loss": 1.5})
    assert isinstance(epoch, Epoch) and (epoch.epoch, epoch.train_loss, epoch.top1) == (2, 1.5, None)
    evaluate = parse({**BASE, "kind": "evaluate", "checkpoint": "best.pt", "top1": 0.7, "top5": 0.9})
    assert isinstance(evaluate, Evaluate) and evaluate.top1 == 0.7
    stage = parse({**BASE, "kind": "stage", "bytes_done": 5, "bytes_total": 10, "eta_s": None, "done": False})
    assert isinstance(stage, Stage) and (stage.bytes_done, stage.eta_s) == (5, None)
    gpu = parse({**BASE, "kind": "gpu", "gpu": 1, "allocated_mb": 1.0, "reserved_mb": 2.0, "peak_mb": 3.0})
    assert isinstance(gpu, Gpu) and (gpu.gpu, gpu.used_mb, gpu.util_pct) == (1, None, None)
    system = parse({**SYSTEM, "disk_read_mb_s": 42.0, "added_by_a_newer_writer": [1, 2]})  # an added field: ignored
    assert isinstance(system, System) and system.node_wide and system.disk_write_mb_s is None


def test_an_unknown_kind_a_newer_major_and_a_record_not_of_its_kind_are_skipped() -> None:
    assert [parse(r) for r in NOT_READ] == [None] * len(NOT_READ)
    live = LiveRun()
    for raw in [*NOT_READ, SYSTEM]:
        live.add(raw)
    assert (live.records, live.skipped, list(live.system), live.gpus, live.train) == (5, 4, [("node01", 0)], {}, None)


def test_progress_reads_the_figures_each_step_reports() -> None:
    train = Progress.of({"step": 30.0, "steps_total": 120.0, "epoch": 1.0, "epochs": 4.0, "resumed_from_step": 24.0})
    assert (train.step, train.steps_total, train.resumed_from_step, train.shards_total) == (30.0, 120.0, 24.0, None)
    shard = Progress.of({"shards_done": 2.0, "shards_total": 5.0, "samples_done": 7.0})  # export's keys: ignored
    assert (shard.shards_done, shard.step) == (2.0, None)


def watched(live: LiveRun, tmp_path: Path) -> str:
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "records", 0.05, 1, [0.4])
    console = Console(width=220, record=True, color_system=None)
    console.print(render(view_runs([paths])[0], live))
    return console.export_text()


def test_watch_draws_a_system_record_without_the_disk_write_and_network_figures(tmp_path: Path) -> None:
    live = LiveRun()
    live.add({**SYSTEM, "disk_read_mb_s": 42.0})  # was a KeyError: disk_write_mb_s, net_rx_mb_s, net_tx_mb_s
    row = next(line for line in watched(live, tmp_path).splitlines() if line.startswith("node01 rank 0"))
    assert "node disk r 42 w - MB/s  net rx - tx - MB/s" in row, row


def append(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def test_watch_on_a_terminal_and_in_lines_goes_past_records_it_cannot_read(tmp_path: Path) -> None:
    from tests.test_telemetry import cli, run_in_pty

    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "records", 0.05, 1, [0.4])
    append(paths.metrics, NOT_READ)
    append(paths.telemetry(NOT_A_PID, 0), [{**SYSTEM, "disk_read_mb_s": 42.0}, *NOT_READ])
    root = ["--runs-root", str(tmp_path / "runs")]
    screen: dict[str, Any] = {}
    terminal = threading.Thread(target=run_in_pty, args=(cli(*root, "watch", paths.run_id), screen))
    terminal.start()
    lines = run_cli(*root, "watch", paths.run_id)
    terminal.join(timeout=120)
    assert lines.code == 0 and "Traceback" not in lines.err, lines.err
    assert "epoch 1: top-1 40.00%" in lines.out and lines.out.rstrip().endswith("COMPLETED"), lines.out
    assert screen["code"] == 0 and "Traceback" not in screen["screen"], screen["screen"][-2000:]
    assert "node disk r 42 w - MB/s" in screen["screen"]


async def test_the_detail_screen_draws_around_records_it_cannot_read(tmp_path: Path) -> None:
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "records", 0.05, 1, [0.4])
    append(paths.metrics, NOT_READ)
    app = make_app(deck=LocalDeck(tmp_path / "runs"))
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(RunDetailScreen(str(paths.root)))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.live.skipped == 4)
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        charts = screen.query_one("#curves", PlotsPanel).charts
        await until(pilot, lambda: "loss" in charts and len(charts["loss"].traces["train"].values) == 12)
        assert screen.live.train is not None and screen.live.train.step == 12


async def test_the_detail_screen_draws_a_scripts_own_figures_as_curves(tmp_path: Path) -> None:
    """A [script] run's clusterdeck.log(..., grad_norm=…) and log_epoch(..., ema_top1=…): extra fields, extra curves."""
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "records", 0.05, 1, [0.4])
    append(paths.metrics, [
        {**BASE, "kind": "train", "step": 13, "epoch": 1.1, "loss": 0.5, "grad_norm": 2.5, "note": "text"},
        {**BASE, "kind": "epoch", "epoch": 2, "top1": 0.5, "ema_top1": 0.55},
    ])  # fmt: skip
    app = make_app(deck=LocalDeck(tmp_path / "runs"))
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(RunDetailScreen(str(paths.root)))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.live.records >= 14)
        charts = app.screen.query_one("#curves", PlotsPanel).charts
        await until(pilot, lambda: "ema_top1 (per epoch)" in charts)
        assert charts["grad_norm"].traces["grad_norm"].values == [2.5]
        assert charts["ema_top1 (per epoch)"].traces["ema_top1"].values == [0.55]
        assert "note" not in charts and app.screen.live.skipped == 0
