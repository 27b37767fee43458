"""`clusterdeck ls` over a runs root of N finished runs, as a whole cold process, against a bare interpreter.

    python bench/ls.py [--runs 1000] [--repeat 5]      # and --runs 100000: the lab-scale target

The runs are written directly, as finished runs whose final state a listing cached; a first `ls` reads
every record and writes the runs root's index of ended runs (``jobs.runindex``), and is timed apart.
Then it runs `python -m clusterdeck.app.cli ls` (reading the index) and its baseline `python -c pass`
alternately, ``--repeat`` times each, and prints their wall times, the median ratio ls/baseline (what
clusterdeck adds to an interpreter start, whatever the machine's speed), the median against the 1 s
budget, and whether torch was imported. The timing lives here, not in the tests: on a loaded 2-core CI
machine a wall-clock assertion fails for reasons that are not the code's.
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

from clusterdeck.jobs.records import Attempt, FinalState, JobRef, RunRecord, StepRecord
from clusterdeck.jobs.runindex import INDEX_NAME
from clusterdeck.jobs.runs import ID_TIME_FORMAT


def make_runs(root: Path, count: int) -> None:
    """``count`` finished runs, as submit and the listing that cached their final state leave them: a record
    and a spec each, written directly (no fsync: a bench's files need not outlive a crash; 100,000 runs are
    made in seconds). Ids are the engine's, with a counter for the random tail, so that none collide."""
    root.mkdir(parents=True, exist_ok=True)
    t = time.time()
    stamp = time.strftime(ID_TIME_FORMAT, time.localtime(t))
    job = JobRef(job_id="1000", submitted_at=t, parts=["main"])
    record = RunRecord(
        run_id="",
        name="",
        created_at=t,
        executor="slurm",
        steps=[StepRecord(name="shard", attempts=[Attempt(number=1, submitted_at=t, jobs=[job])])],
    ).model_dump(mode="json")
    for k in range(count):
        run_id = f"{stamp}-{k:06x}"
        state = "COMPLETED" if k % 3 else "FAILED"
        record.update(run_id=run_id, name=f"run-{k}")
        record["final"] = FinalState(state=state, ended_at=t + 60, steps={"shard": state}).model_dump(mode="json")
        record["steps"][0]["attempts"][0]["jobs"][0]["job_id"] = str(1000 + k)
        run = root / run_id
        run.mkdir()
        spec = {"name": f"run-{k}", "cluster": {"executor": "slurm"}}  # as submit writes it, in short
        (run / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
        (run / "run.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ls-") as home:
        started = time.perf_counter()
        make_runs(Path(home) / "runs", args.runs)
        made = time.perf_counter() - started
        env = {**os.environ, "CLUSTERDECK_HOME": home}
        first = wall([sys.executable, "-m", "clusterdeck.app.cli", "ls"], env)  # no index yet: every record read
        index = Path(home) / "runs" / INDEX_NAME
        print(f"{args.runs} runs made in {made:.1f}s; the first ls read every record and wrote the index "
              f"({index.stat().st_size / 1e6:.1f} MB) in {first:.2f}s")  # fmt: skip
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
