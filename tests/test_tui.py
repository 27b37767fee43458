"""The app driven by Textual's pilot against real runs on the local executor."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Static

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.newrun import NewRunScreen
from clusterdeck.app.tui.panels import LogPanel
from clusterdeck.app.tui.plots import PlotsPanel
from clusterdeck.app.tui.runs import RunsScreen
from clusterdeck.jobs.deck.local import LocalDeck
from clusterdeck.jobs.tail.access import FileStat, Handle, LocalFiles
from tests.conftest import REPO, noted, run_cli, train_section, until
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
        assert [str(c) for c in row[:2]] == ["finished", run_id] and row[3] == "COMPLETED" and row[4] == "100%"
        assert row[9] == f"{best:.1%}" and row[8] != "-"  # best top-1 and images/s from the run's own reports
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
