"""The app driven by Textual's pilot against real runs on the local executor (and one waiting on real SLURM)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from textual.widgets import DataTable, Static

from clusterdeck.app.formats import when
from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.newrun import NewRunScreen
from clusterdeck.app.tui.panels import LogPanel
from clusterdeck.app.tui.plots import PlotsPanel
from clusterdeck.app.tui.runs import BAR, RunsScreen, progress_text, start_order, start_text
from clusterdeck.jobs.deck.local import LocalDeck
from clusterdeck.jobs.dispatch.base import QueueWait
from clusterdeck.jobs.dispatch.queue import REASONS
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.tail.access import FileStat, Handle, LocalFiles
from tests.conftest import REPO, noted, require_slurm, run_cli, show, train_section, until, wait_for
from tests.test_slurm_preflight import HELD, shard_file
from tests.test_snapshots import make_run


def submit(tmp_path: Path, shards: Path, name: str, *extra: str, **train: Any) -> str:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(f'name = "{name}"\n' + train_section(shards, **train))
    result = run_cli("submit", str(spec), "--json", *extra, timeout=240)
    assert result.code == 0, result.err
    return str(json.loads(result.out)["run_id"])


async def test_the_runs_list_and_a_finished_runs_panels(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    run_id = submit(tmp_path, sample_shards, "finished", "--wait")
    shown = json.loads(run_cli("show", run_id, "--json").out)
    best = shown["steps"][0]["parts"][0]["progress"]["best_top1"]
    app = make_app(home / "runs")
    async with app.run_test(size=(80, 24)) as pilot:  # the smallest terminal it is made for
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 1)
        row = table.get_row(run_id)
        assert [str(c) for c in row[:2]] == ["finished", run_id] and row[3] == "COMPLETED"
        assert row[4] == "-" and row[5] == "100%"  # no wait; an ended run's share, no bar
        assert row[10] == f"{best:.1%}" and row[9] != "-"  # best top-1 and images/s from the run's own reports
        await pilot.press("slash", *"nomatch")
        assert table.row_count == 0
        await pilot.press("escape")
        assert table.row_count == 1
        await pilot.press("enter")
        assert isinstance(app.screen, RunDetailScreen)
        logs = app.screen.query_one(LogPanel)
        await until(pilot, lambda: any("train main completed" in line for _, line in logs.lines))
        charts = app.screen.query_one("#curves", PlotsPanel).charts
        await until(
            pilot, lambda: "val accuracy" in charts and {"top-1", "top-5"} <= charts["val accuracy"].traces.keys()
        )
        steps = [json.loads(x) for x in (home / "runs" / run_id / "metrics.jsonl").open()]
        assert len(charts["loss"].traces["train"].values) == len([r for r in steps if r["kind"] == "train"])
        summary = app.screen.query_one("#summary", Static)
        assert run_id in str(summary.content) and "COMPLETED" in str(summary.content)
        assert summary.region.y == 1  # right under the header: nothing overflows the screen
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_watch_a_live_run_then_cancel_it(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    run_id = submit(tmp_path, sample_shards, "live", epochs=40)
    app = make_app(home / "runs")
    told = noted(app)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.screen.query_one(DataTable)
            await until(pilot, lambda: table.row_count == 1)
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, RunDetailScreen)
            logs = screen.query_one(LogPanel)
            await until(pilot, lambda: sum(line.startswith("step ") for _, line in logs.lines) >= 3)
            seen = len(logs.lines)
            await until(pilot, lambda: len(logs.lines) > seen)  # it keeps arriving
            assert screen.view is not None and screen.view.state == "RUNNING"
            await pilot.press("c")  # once: asks, and cancels nothing
            asked = f"press c again to cancel run {run_id}"
            await until(pilot, lambda: asked in told)
            assert not [w for w in app.workers if w.name == "cancel"] and screen.view.state == "RUNNING"
            await pilot.press("c")  # twice: cancels
            await until(pilot, lambda: f"run {run_id}: cancel requested" in told)
            await until(pilot, lambda: screen.view is not None and screen.view.state == "CANCELLED")
    finally:
        run_cli("cancel", run_id)  # whatever failed above, no run is left training
    assert json.loads(run_cli("show", run_id, "--json").out)["state"] == "CANCELLED"


def test_the_app_in_a_real_terminal(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    """tmux runs the app; keys are typed and the screen read back, as a person would."""
    run_id = submit(tmp_path, sample_shards, "in-tmux", "--wait", epochs=1)
    session = f"cd-{run_id}"
    command = f"CLUSTERDECK_HOME={home} {sys.executable} -m clusterdeck.app.cli; echo exited $?; sleep 60"

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def wait_for(*texts: str) -> str:
        """The screen once every one of ``texts`` is on it at the same time (a redraw may be half done)."""
        deadline = time.monotonic() + 60
        while not all(text in (shown := screen()) for text in texts):
            assert time.monotonic() < deadline, f"{texts!r} never appeared together:\n{shown}"
            time.sleep(0.2)
        return shown

    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True, cwd=REPO)
    try:
        wait_for(run_id)
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        wait_for("train main completed")  # the log, and apart from it the state
        wait_for("train: COMPLETED", "Follow/pause")  # the detail screen, its footer drawn
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        wait_for("Sort")  # the runs screen's bindings (Escape then q at once would read as alt+q)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_for("exited 0")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_the_app_never_imports_torch() -> None:
    probe = (
        "import sys, clusterdeck.app.tui.app, clusterdeck.app.tui.detail, clusterdeck.app.tui.runs, "
        "clusterdeck.app.tui.panels, clusterdeck.app.tui.newrun, clusterdeck.app.tui.compare, "
        "clusterdeck.app.tui.cluster, clusterdeck.jobs.spec_form, clusterdeck.jobs.submit, "
        "clusterdeck.jobs.dispatch.slurm; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'webdataset', 'numpy')))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


class RecordingFiles(LocalFiles):
    """This machine's files, noting every path opened and listed: what a remote deck would read over SFTP."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.listed: list[str] = []

    def open(self, path: str) -> tuple[Handle, FileStat]:
        self.opened.append(path)
        return super().open(path)

    def list(self, directory: str, pattern: str) -> list[str]:
        self.listed.append(directory)
        return super().list(directory, pattern)


async def test_the_detail_screen_reads_the_run_through_the_decks_files(tmp_path: Path) -> None:
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "through-the-deck", 0.05, 2, [0.4, 0.5])
    paths.checkpoints.mkdir()
    (paths.checkpoints / "last.pt").write_bytes(b"\0" * 2_500_000)
    deck = LocalDeck(tmp_path / "runs")
    files = deck.files = RecordingFiles()
    app = make_app(deck=deck)
    told = noted(app)
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(RunDetailScreen(str(paths.root)))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.view is not None)
        screen = app.screen
        logs = screen.query_one(LogPanel)
        await until(pilot, lambda: any("train main completed" in line for _, line in logs.lines))
        await until(pilot, lambda: "loss" in screen.query_one("#curves", PlotsPanel).charts)
        assert {str(paths.record), str(paths.metrics)} <= set(files.opened)
        assert str(paths.submitit) in files.listed and str(paths.telemetry_dir) in files.listed

        await pilot.press("k")  # the checkpoints, listed and sized through the deck too
        await until(pilot, lambda: any("last.pt: 2.5 MB" in m for m in told), timeout=10)
        assert str(paths.checkpoints) in files.listed and str(paths.checkpoints / "last.pt") in files.opened

        await pilot.press("l")  # clone: the recorded spec, read through the deck
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen), timeout=10)
        assert str(paths.spec) in files.opened
        clone = app.screen
        assert isinstance(clone, NewRunScreen)
        await until(pilot, lambda: clone.checked is not None and clone.checked.table.get("name") == "through-the-deck")


def test_a_waiting_runs_start_and_a_live_runs_progress_as_the_runs_table_shows_them() -> None:
    noon = time.mktime((2026, 11, 22, 12, 0, 0, 0, 0, -1))
    assert start_text(None) == "-"  # not waiting
    assert start_text(QueueWait("Dependency", REASONS["Dependency"]), noon) == "unknown"
    assert start_text(QueueWait("Priority", REASONS["Priority"], noon + 3600), noon) == "13:00"
    assert start_text(QueueWait("Priority", REASONS["Priority"], noon + 2 * 86400), noon) == "Nov 24 12:00"
    assert start_order(QueueWait("Priority", "", noon)) < start_order(QueueWait("Dependency", "")) < start_order(None)

    assert progress_text(0.43, live=True) == "██▋     43%"  # 20.6 of 48 eighths: 21
    assert progress_text(0.0, live=True) == "         0%" and progress_text(1.0, live=True) == "██████ 100%"
    assert progress_text(0.43, live=False) == "43%" and progress_text(None, live=True) == "-"
    widths = {cell_len(progress_text(p / 100, live=True)) for p in range(101)}
    assert widths == {BAR + 5}  # one width at every share: a refresh updates the cell in place


@pytest.mark.slurm
async def test_a_pending_run_shows_its_estimated_start_and_why_it_waits(
    sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    """A shard job held to its begin time on the real cluster: its row's start column and, selected, the reason."""
    require_slurm()
    result = run_cli("submit", str(shard_file(tmp_path, sample_data, extra_sbatch=[HELD])), "--json")
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["run_id"]
    try:
        wait_for("SLURM's estimate", lambda: (show(run_id)["queue"] or {}).get("expected_start"), 60)
        queue = show(run_id)["queue"]
        app = make_app(home / "runs")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            table = screen.query_one(DataTable)
            await until(pilot, lambda: table.row_count == 1)
            expected = start_text(QueueWait(**queue))  # its format: the test above
            assert expected not in ("-", "unknown")
            await until(pilot, lambda: table.get_row(run_id)[3:5] == ["PENDING", expected])
            note = screen.query_one("#queue-note", Static)
            await until(pilot, lambda: note.display and note.region.height >= 1)  # the selected run's wait, in words
            said = f"checked waits: BeginTime: {REASONS['BeginTime']}; starts about {when(queue['expected_start'])}"
            assert str(note.content) == said
    finally:
        run_cli("cancel", run_id)
    wait_for("the cancel", lambda: show(run_id)["state"] == "CANCELLED", 60)
