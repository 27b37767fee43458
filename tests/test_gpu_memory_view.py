"""GPU memory as ``watch`` and the app's GPU tab show it: NVML's used beside torch's reserved, so the memory no
allocator figure accounts for (nvJPEG's buffers, NCCL, the CUDA context) is visible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.widgets import TabbedContent

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.plots import PlotsPanel
from clusterdeck.app.watch import render
from clusterdeck.jobs.deck.local import LocalDeck
from clusterdeck.jobs.status import view_runs
from clusterdeck.jobs.tail.live import LiveRun
from tests.conftest import until
from tests.test_snapshots import NOT_A_PID, T0, make_run

GPU = {"kind": "gpu", "node": "node01", "rank": 0, "attempt": 1, "gpu": 0, "allocated_mb": 9_000.0}
NVML = {"used_mb": 14_300.0, "total_mb": 80_000.0, "util_pct": 87.0}


def gpu_record(time: float, reserved_mb: float, peak_mb: float = 10_000.0, **nvml: Any) -> dict[str, Any]:
    return {**GPU, "time": time, "reserved_mb": reserved_mb, "peak_mb": peak_mb, **nvml}


def watched(tmp_path: Path, gpu: dict[str, Any]) -> str:
    """What ``watch`` draws for the sample run with a ``system`` record and this ``gpu`` one from its task."""
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "gpu-memory", 0.05, 1, [0.4])
    live = LiveRun()
    system = {"kind": "system", "node": "node01", "rank": 0, "time": gpu["time"], "cpu_pct": 180.0, "rss_mb": 2100.0}
    live.add({**system, "read_mb_s": 0.0, "data_mb_s": 40.0, "data_samples_s": 1150.0})
    live.add(gpu)
    console = Console(width=200, record=True, color_system=None)
    console.print(render(view_runs([paths])[0], live))
    return console.export_text()


def test_watch_shows_nvml_used_beside_reserved_and_the_gap(tmp_path: Path) -> None:
    text = watched(tmp_path, gpu_record(T0 + 1000, 12_000.0, **NVML))
    row = next(line for line in text.splitlines() if line.startswith("GPU node01:0 (rank 0)"))
    assert "util 87%  allocated 9.0  reserved 12.0  used 14.3/80.0 (+2.3 outside torch)  peak 10.0 GB" in row, row


def test_watch_without_nvml_shows_the_allocators_figures_only(tmp_path: Path) -> None:
    text = watched(tmp_path, gpu_record(T0 + 1000, 12_000.0))
    row = next(line for line in text.splitlines() if line.startswith("GPU node01:0 (rank 0)"))
    assert "allocated 9.0  reserved 12.0  peak 10.0 GB" in row and "used" not in row, row


async def test_the_gpu_tab_draws_used_and_reserved_side_by_side(tmp_path: Path) -> None:
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "gpu-memory", 0.05, 1, [0.4])
    records = [gpu_record(T0 + s, 11_000.0 + 100 * s, **NVML) for s in range(1, 6)]
    with open(paths.telemetry(NOT_A_PID, 0), "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
    app = make_app(deck=LocalDeck(tmp_path / "runs"))
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(RunDetailScreen(str(paths.root)))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.view is not None)
        charts = app.screen.query_one("#gpu", PlotsPanel).charts
        await until(pilot, lambda: "GPU node01:0 memory" in charts)
        memory = charts["GPU node01:0 memory"]
        await until(pilot, lambda: len(memory.traces["reserved 0"].values) == 5)
        assert list(memory.traces) == ["used", "reserved 0", "allocated 0"]  # on one chart
        used, reserved = memory.traces["used"], memory.traces["reserved 0"]
        assert (used.label, used.values[-1], memory.chart_title) == ("used", 14.3, "GPU node01:0 memory of 80 GB")
        assert (reserved.label, reserved.values) == ("reserved (rank 0)", [11.1, 11.2, 11.3, 11.4, 11.5])
        app.screen.query_one(TabbedContent).active = "gpu-tab"
        await until(pilot, lambda: memory.size.width > 90)
        legend = " ".join(memory.render().plain.splitlines()[:2])  # each series with its latest value, on two lines
        assert "used 14.3 GB" in legend and "reserved (rank 0) 11.5 GB" in legend, legend
        assert "allocated (rank 0) 9 GB" in legend, legend
