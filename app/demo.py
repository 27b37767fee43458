"""``clusterdeck demo``: sample data, sharded by a real run on the embedded local executor."""

from __future__ import annotations

import os
from pathlib import Path

from jobs import atomic
from jobs.runs import default_runs_root


def run_demo(runs_root: Path | None) -> int:
    from jobs.sample_data import make_sample_data
    from jobs.spec import validate
    from jobs.submit import submit_run, wait_run

    home = (runs_root or default_runs_root()).parent / "demo"
    data_dir = home / "data"
    if not (data_dir / "synsets.txt").exists():
        print(f"writing sample data to {data_dir}", flush=True)
        make_sample_data(data_dir, classes=10, train_per_class=40, val_per_class=10, seed=0)
    spec = validate(
        {
            "name": "demo-shards",
            "cluster": {"executor": "local"},
            "shard": {
                "output": str(home / "shards"),
                "shard_size_mb": 2,
                "workers": min(2, os.cpu_count() or 1),
                "train": {"input": str(data_dir / "train"), "format": "imagefolder"},
                "val": {
                    "input": str(data_dir / "val"),
                    "format": "ilsvrc-val",
                    "ground_truth": str(data_dir / "ILSVRC2012_validation_ground_truth.txt"),
                    "synsets": str(data_dir / "synsets.txt"),
                },
                "resources": {"time_min": 30},
            },
        },
        source="demo",
    )
    paths = submit_run(spec, runs_root)
    print(f"submitted run {paths.run_id} to the local executor; waiting", flush=True)
    view = wait_run(paths, poll_s=0.5)
    print(f"run {view.run_id} {view.state}")
    if view.state != "COMPLETED":
        print(f"see: clusterdeck logs {view.run_id} --err")
        return 1
    assert spec.shard is not None
    output = spec.shard.output
    index = atomic.read_json(output / "index.json")
    for split, entry in index["splits"].items():
        print(f"{split}: {entry['samples']} samples in {len(entry['shards'])} shards")
    print(f"shards: {output}")
    print(f"index:  {output / 'index.json'}")
    print(f"next:   clusterdeck show {view.run_id}   |   clusterdeck logs {view.run_id}")
    return 0
