"""README's screenshots: the app on real runs of this machine, saved as SVG by Textual.

Writes the sample dataset, shards it, submits two small ResNet-18 runs on the local executor
(AdamW, lr 0.002 and 0.0005), and while the second one trains saves the runs list and its detail
(log, I/O and curves tabs), then, once both ended, the compare screen.

    python docs/screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, TabbedContent

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.compare import CompareScreen
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.plots import PlotsPanel
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import make_sample_data
from clusterdeck.jobs.shard.step import run_shard_part
from clusterdeck.jobs.status import view_run
from clusterdeck.jobs.submit import submit_run

SIZE = (110, 32)


async def until(pilot: Pilot[Any], condition: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app never showed what was waited for")
        await pilot.pause(0.5)


def train_spec(name: str, shards: Path, lr: float) -> Any:
    return validate(
        {
            "name": name,
            "train": {
                "train_shards": str(shards),
                "model": "resnet18",
                "image_size": 32,
                "epochs": 6,
                "batch_size": 32,
                "optimizer": "adamw",
                "lr": lr,
                "weight_decay": 5e-4,
                "schedule": "cosine",
                "warmup_epochs": 1,
                "amp": "off",
                "workers": 1,
                "log_every_steps": 2,
                "resources": {"gpus_per_node": 0, "cpus_per_task": 2},
            },
            "telemetry": {"interval_s": 0.5},
        }
    )


async def shoot(out: Path, root: Path, runs: list[Path]) -> None:
    app = make_app(root)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 2)
        await until(pilot, lambda: all(str(table.get_row_at(i)[4]) not in ("-", "0%") for i in range(2)))
        await pilot.pause(1)
        app.save_screenshot(str(out / "runs.svg"))
        app.push_screen(RunDetailScreen(str(runs[1])))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.query("#curves"))
        screen = app.screen
        charts = screen.query_one("#curves", PlotsPanel).charts
        await until(pilot, lambda: "val accuracy" in charts and len(charts["val accuracy"].traces["top-1"].values) >= 4)
        for tab in ("log-tab", "io-tab", "curves-tab"):
            screen.query_one(TabbedContent).active = tab
            await pilot.pause(1)
            app.save_screenshot(str(out / f"detail-{tab.removesuffix('-tab')}.svg"))
        await until(pilot, lambda: all(view_run_ended(p) for p in runs), timeout=900)
        app.push_screen(CompareScreen([str(p) for p in runs]))
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        await pilot.pause(1)
        app.save_screenshot(str(out / "compare.svg"))


def view_run_ended(path: Path) -> bool:
    from clusterdeck.jobs.rundir import RunPaths

    return view_run(RunPaths(path)).ended


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cd-shots-"))
    os.environ["CLUSTERDECK_HOME"] = str(work / "home")
    data = make_sample_data(work / "sample", classes=10, train_per_class=60, val_per_class=10, seed=0)
    shard = validate(
        {
            "name": "shards",
            "shard": {"output": str(work / "shards"), "shard_size_mb": 2, "workers": 2, **data.shard_inputs()},
        }
    )
    assert shard.shard is not None
    run_shard_part(shard.shard, "main", lambda progress: None)
    root = work / "home" / "runs"
    runs = [submit_run(train_spec(f"resnet18-lr{lr}", work / "shards", lr), root).root for lr in (0.002, 0.0005)]
    asyncio.run(shoot(args.out, root, runs))
    print(f"wrote {', '.join(sorted(p.name for p in args.out.glob('*.svg')))} to {args.out}")


if __name__ == "__main__":
    main()
