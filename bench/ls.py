"""`clusterdeck ls` over a runs root of N finished runs: wall time of the real command, and what it imported.

    python bench/ls.py [--runs 1000] [--repeat 5]

Prints each wall time, the ratio of the slowest to the 1 s budget, and whether torch was imported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobs import atomic
from jobs.records import Attempt, FinalState, JobRef, RunRecord, StepRecord, save_record
from jobs.runs import create_run_dir


def make_runs(root: Path, count: int) -> None:
    t = time.time()
    for k in range(count):
        paths = create_run_dir(root)
        job = JobRef(job_id=str(1000 + k), submitted_at=t, parts=["main"])
        state = "COMPLETED" if k % 3 else "FAILED"
        atomic.write_json(paths.spec, {"name": f"run-{k}", "cluster": {"executor": "slurm"}})  # as submit writes it
        save_record(
            paths,
            RunRecord(
                run_id=paths.run_id,
                name=f"run-{k}",
                created_at=t,
                executor="slurm",
                steps=[StepRecord(name="shard", attempts=[Attempt(number=1, submitted_at=t, jobs=[job])])],
                final=FinalState(state=state, ended_at=t + 60, steps={"shard": state}),
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ls-") as home:
        make_runs(Path(home) / "runs", args.runs)
        env = {**os.environ, "CLUSTERDECK_HOME": home}
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "app.cli", "ls"], env=env, capture_output=True, text=True, check=True
            ).stdout
            times.append(time.perf_counter() - started)
            assert out.count("run-") == args.runs
        probe = "import sys; from app.cli import main; main(['ls']); sys.stderr.write(str('torch' in sys.modules))"
        torch = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stderr
        print(f"clusterdeck ls, {args.runs} runs: " + " ".join(f"{t:.2f}s" for t in times))
        print(f"ratio slowest/1s budget: {max(times):.2f} (target < 1.0); torch imported: {torch}")


if __name__ == "__main__":
    main()
