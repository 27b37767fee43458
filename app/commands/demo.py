"""``clusterdeck demo``: sample data → shard → train → evaluate, as one real run on the embedded local executor."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clusterdeck.app.commands.base import Subparsers
from clusterdeck.app.exitcodes import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from clusterdeck.jobs.status import RunView

NAME = "demo"
LOCAL_ONLY = True

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 100, 10


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    return sub.add_parser(NAME, help="make sample data, shard it, train and evaluate a small model on this machine")


def demo_table(home: Path, data: Path) -> dict[str, object]:
    """The demo's spec: a ResNet-18 at 64 px, AdamW with a cosine schedule, a few minutes on two CPU cores."""
    cores = os.cpu_count() or 1
    return {
        "name": "demo",
        "cluster": {"executor": "local"},
        "shard": {
            "output": str(home / "shards"),
            "shard_size_mb": 2,
            "workers": min(2, cores),
            "train": {"input": str(data / "train"), "format": "imagefolder"},
            "val": {
                "input": str(data / "val"),
                "format": "ilsvrc-val",
                "ground_truth": str(data / "ILSVRC2012_validation_ground_truth.txt"),
                "synsets": str(data / "synsets.txt"),
            },
            "resources": {"time_min": 30},
        },
        "train": {
            "model": "resnet18",
            "image_size": 64,
            "epochs": 12,
            "batch_size": 32,
            "optimizer": "adamw",
            "lr": 0.002,
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "warmup_epochs": 1,
            "amp": "off",
            "workers": min(2, cores),
            "log_every_steps": 10,
            "resources": {"time_min": 30},
        },
        "evaluate": {"workers": min(2, cores), "amp": "off", "resources": {"time_min": 10}},
    }


def run(args: argparse.Namespace) -> int:
    from clusterdeck.jobs.extras import TRAIN, require
    from clusterdeck.jobs.runs import default_runs_root
    from clusterdeck.jobs.runspec import validate
    from clusterdeck.jobs.sample_data import make_sample_data
    from clusterdeck.jobs.submit import submit_run, wait_run
    from clusterdeck.jobs.tail.records import Progress

    require(TRAIN, "the demo")  # before the sample data is written: it trains a model
    runs_root: Path | None = args.runs_root
    started = time.monotonic()
    home = (runs_root or default_runs_root()).parent / "demo"
    data = home / f"data-{CLASSES}x{TRAIN_PER_CLASS}"
    if not (data / "synsets.txt").exists():
        print(f"writing sample data to {data}", flush=True)
        make_sample_data(data, CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, seed=0)
    spec = validate(demo_table(home, data), source="demo")
    paths = submit_run(spec, runs_root)
    print(f"submitted run {paths.run_id} (shard → train → evaluate) to the local executor; waiting", flush=True)
    shown: dict[str, str] = {}

    def progress(view: RunView) -> None:
        for step in view.steps:
            p = Progress.of(step.parts[0].progress if step.parts else {})
            line = f"{step.name}: {step.state}"
            if step.name == "train" and p.epochs:
                line += f" epoch {int(p.epoch or 0)}/{int(p.epochs)}"
                if p.top1 is not None:
                    line += f", val top-1 {p.top1:.1%}"
            if shown.get(step.name) != line:
                shown[step.name] = line
                print(line, flush=True)

    view = wait_run(paths, poll_s=1.0, on_update=progress)
    print(f"run {view.run_id} {view.state} in {time.monotonic() - started:.0f} s")
    if view.state != "COMPLETED":
        print(f"see: clusterdeck logs {view.run_id} --err")
        return EXIT_FAILED
    result = Progress.of(view.steps[-1].parts[0].progress)
    print(
        f"val top-1 {result.top1 or 0:.1%}  top-5 {result.top5 or 0:.1%}  on {int(result.val_samples or 0)} images "
        f"of {CLASSES} classes (chance: {1 / CLASSES:.0%} and {5 / CLASSES:.0%})"
    )
    print(f"checkpoints: {paths.checkpoints}")
    print(f"next:   clusterdeck show {view.run_id}   |   clusterdeck logs {view.run_id}")
    return EXIT_OK
