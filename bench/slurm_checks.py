"""What submit's SLURM checks and the queue estimate cost, against the scheduler calls they cannot do without.

    python bench/slurm_checks.py [--jobs 20] [--repeat 7]

Needs the SLURM cluster of tests/cluster/slurm-up.sh (or any). Two pairs, each timed alternately ``--repeat``
times, the median of each and their ratio printed:

- ``check_submission`` of a spec naming an account and a QOS (``sinfo`` and ``sacctmgr`` side by side, parsed and
  checked), against the same two calls run bare, one after the other; and of a spec naming neither (``sinfo``
  alone) against one bare ``sinfo`` call: what the checks add to the calls they need;
- ``SlurmBackend.states`` of ``--jobs`` pending jobs (``sacct``, then one ``squeue --start`` for all of them),
  against ``sacct_states`` alone: what the queue estimate adds to a listing's poll. The jobs are held to a begin
  time an hour ahead and cancelled at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable

from clusterdeck.jobs.cluster import current_user
from clusterdeck.jobs.dispatch.slurm import SlurmBackend, sacct_states
from clusterdeck.jobs.dispatch.slurm_checks import check_submission
from clusterdeck.jobs.records import JobRef
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.spec import RunSpec


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pair(name: str, ours: Callable[[], object], base: Callable[[], object], repeat: int) -> None:
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(ours))
        b.append(timed(base))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{name}: ours median {ma * 1000:.1f} ms (min {min(a) * 1000:.1f}), baseline median {mb * 1000:.1f} ms "
          f"(min {min(b) * 1000:.1f}), ratio {ma / mb:.2f}")  # fmt: skip


def make_spec(account: str, qos: str) -> RunSpec:
    resources = {"partition": "cpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "time_min": 10}
    table = {
        "name": "bench",
        "cluster": {"executor": "slurm"},
        "script": {"command": ["true"], "resources": {**resources, "account": account, "qos": qos}},
    }
    return validate(table, source="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    assoc = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", f"user={current_user()}", "format=account,qos"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    account, qos = assoc[0].split("|")[0], assoc[0].split("|")[1].split(",")[0]
    spec, plain = make_spec(account, qos), make_spec("", "")
    sinfo = ["sinfo", "-h", "-N", "-O", "Partition:|,NodeList:|,CPUs:|,Memory:|,Gres:|,Time:|"]
    sacctmgr = ["sacctmgr", "-n", "-P", "show", "assoc", f"user={current_user()}", "format=account,qos"]
    pair(
        "submit checks (account, QOS) vs sinfo then sacctmgr",
        lambda: check_submission(spec, ["script"]),
        lambda: [subprocess.run(c, capture_output=True, check=True) for c in (sinfo, sacctmgr)],
        args.repeat,
    )
    pair(
        "submit checks (no account) vs one sinfo",
        lambda: check_submission(plain, ["script"]),
        lambda: subprocess.run(sinfo, capture_output=True, check=True),
        args.repeat,
    )

    ids = []
    try:
        for _ in range(args.jobs):
            out = subprocess.run(
                ["sbatch", "--parsable", "-p", "cpu", "-t", "5", "--mem=100M", "--begin=now+3600", "--wrap", "true"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            ids.append(out.strip().split(";")[0])
        deadline = time.monotonic() + 60
        while len(sacct_states(ids)) < len(ids):  # the accounting database records a new job a moment later
            assert time.monotonic() < deadline, "sacct did not list the jobs in a minute"
            time.sleep(0.5)
        jobs = [JobRef(job_id=i, submitted_at=time.time(), parts=["main"]) for i in ids]
        backend = SlurmBackend()
        states = backend.states(jobs)
        waiting = sum(s.queue is not None and s.queue.expected_start is not None for s in states.values())
        print(f"{waiting} of {len(ids)} pending jobs have an expected start")
        pair(
            f"states of {len(ids)} pending jobs vs sacct alone",
            lambda: backend.states(jobs),
            lambda: sacct_states(ids),
            args.repeat,
        )
    finally:
        if ids:
            subprocess.run(["scancel", *ids], check=False)


if __name__ == "__main__":
    main()
