"""`clusterdeck ls` over a runs root of N finished runs, as a whole cold process, against a bare interpreter.

    python bench/ls.py [--runs 1000] [--repeat 5]

Runs `python -m clusterdeck.app.cli ls` and its baseline `python -c pass` alternately, ``--repeat`` times each,
and prints their wall times, the median ratio ls/baseline (what clusterdeck adds to an interpreter
start, whatever the machine's speed), the median against the 1 s budget, and whether torch was
imported. The timing lives here, not in the tests: on a loaded 2-core CI machine a wall-clock
assertion fails for reasons that are not the code's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clusterdeck.jobs import atomic
from clusterdeck.jobs.records import Attempt, FinalState, JobRef, RunRecord, StepRecord, save_record
from clusterdeck.jobs.runs import create_run_dir


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
        ls_times, base_times = [], []
        for _ in range(args.repeat):  # alternately: a burst of load on the machine hits both alike
            base_times.append(wall([sys.executable, "-c", "pass"], env))
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "clusterdeck.app.cli", "ls"], env=env, capture_output=True, text=True, check=True
            ).stdout
            ls_times.append(time.perf_counter() - started)
            assert out.count("run-") == args.runs
        probe = (
            "import sys; from clusterdeck.app.cli import main; main(['ls']); "
            "sys.stderr.write(str('torch' in sys.modules))"
        )
        torch = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stderr
        ls, base = statistics.median(ls_times), statistics.median(base_times)
        print(f"clusterdeck ls, {args.runs} runs: " + " ".join(f"{t:.3f}s" for t in ls_times))
        print("baseline python -c pass: " + " ".join(f"{t:.3f}s" for t in base_times))
        print(f"ratio ls/baseline (medians): {ls / base:.1f} ({ls:.3f}s / {base:.3f}s)")
        print(f"median against the 1 s budget: {ls:.2f} (target < 1.0); torch imported: {torch}")


def wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    return time.perf_counter() - started

if __name__ == "__main__":
    main()
