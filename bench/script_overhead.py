"""What running a training loop as a ``[script]`` step costs: the same tiny loop on clusterdeck's ShardLoader
(``bench/script_loop.py``), run by hand and as a step on the local executor, alternately, ``--repeat`` times.

Two figures, each a median of ratios taken within a round (so a slow spell of the machine hits both sides):
- images/s of the loop's own timed epochs (after its first), step over bare (target >= 0.95): what the step's
  process around the command (telemetry sampling every second, stderr passed through, the stop file) takes from
  training;
- the whole command's wall time, bare ``python script_loop.py`` against ``clusterdeck submit --wait``: what a
  user waits for in all, submission and the job's start included, over a short run.

    python bench/script_overhead.py [--classes 10] [--per-class 200] [--epochs 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterdeck.app.cli", *args], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="script-overhead-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "CLUSTERDECK_HOME": str(root / "home")}
        for name in [n for n in env if n.startswith("CLUSTERDECK_") and n != "CLUSTERDECK_HOME"]:
            del env[name]
        cli("sample-data", str(root / "data"), "--classes", str(args.classes), "--train-per-class",
            str(args.per_class), "--val-per-class", "2", env=env)  # fmt: skip
        shards = root / "shards"
        shard_spec = root / "shard.toml"
        shard_spec.write_text(
            f'name = "bench shards"\n[shard]\noutput = "{shards}"\nshard_size_mb = 4\nworkers = 2\n'
            f'[shard.train]\ninput = "{root / "data" / "train"}"\n'
        )
        cli("submit", str(shard_spec), "--wait", env=env)
        loop = [sys.executable, str(HERE / "script_loop.py"), "--epochs", str(args.epochs)]
        step_spec = root / "step.toml"
        step_spec.write_text(
            f'name = "bench script"\n[script]\ncommand = {json.dumps(loop)}\nworkdir = "{root}"\n'
            f'shards = "{shards}"\n[script.resources]\ngpus_per_node = 0\n'
        )
        rates, walls = [], []
        for round_ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run([*loop, "--shards", str(shards), "--out", str(root / "bare.json")], env=env, check=True)
            bare_wall = time.perf_counter() - started
            started = time.perf_counter()
            submitted = json.loads(cli("submit", str(step_spec), "--wait", "--json", env=env).stdout)
            step_wall = time.perf_counter() - started
            bare = json.loads((root / "bare.json").read_text())["images_per_s"]
            step = json.loads((Path(submitted["path"]) / "checkpoints" / "bench.json").read_text())["images_per_s"]
            rates.append(step / bare)
            walls.append(bare_wall / step_wall)
            print(
                f"round {round_ + 1}: images/s bare {bare:.0f}, step {step:.0f} ({step / bare:.3f}); "
                f"wall bare {bare_wall:.1f} s, step {step_wall:.1f} s ({bare_wall / step_wall:.3f})",
                flush=True,
            )
        print(f"step/bare images/s: {statistics.median(rates):.3f} (median of {args.repeat}; target >= 0.95)")
        print(f"bare/step wall time: {statistics.median(walls):.3f} (the whole command, submission included)")


if __name__ == "__main__":
    main()
