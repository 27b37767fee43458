"""What runs inside a scheduler job: one part of a step, recording its own status.

These functions are pickled by submitit and called on the compute node. They read the
resolved spec from the run directory, write ``status/<step>.<attempt>.<part>.json`` when
they start and end, and print progress to stdout (the job's log).
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from pathlib import Path

from jobs.errors import UserError
from jobs.records import PartStatus, load_run_spec, now, save_status
from jobs.rundir import RunPaths


def _job_id() -> str:
    if "SLURM_JOB_ID" in os.environ:
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
    return os.environ.get("SUBMITIT_LOCAL_JOB_ID", str(os.getpid()))


def run_part(run_root: str, step: str, attempt: int, part: str) -> None:
    """Runs one part of a step and records how it ended; a failure is re-raised for the scheduler."""
    paths = RunPaths(Path(run_root))
    status = PartStatus(
        step=step,
        attempt=attempt,
        part=part,
        state="RUNNING",
        node=socket.gethostname(),
        job_id=_job_id(),
        started_at=now(),
    )
    save_status(paths, status)
    print(f"[clusterdeck] {step} {part} (attempt {attempt}) on {status.node}, job {status.job_id}", flush=True)

    def report(progress: dict[str, float]) -> None:
        nonlocal status
        status = status.model_copy(update={"progress": progress})
        save_status(paths, status)

    try:
        spec = load_run_spec(paths, check_paths=False)
        if step == "shard":
            from jobs.shard.step import run_shard_part

            assert spec.shard is not None
            run_shard_part(spec.shard, part, report)
        else:
            raise ValueError(f"unknown step {step!r}")
    except BaseException as exc:
        message = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
        if not isinstance(exc, (UserError, KeyboardInterrupt)):
            traceback.print_exc()
        print(f"[clusterdeck] {step} {part} failed: {message}", file=sys.stderr, flush=True)
        save_status(
            paths, status.model_copy(update={"state": "FAILED", "ended_at": now(), "exit_code": 1, "error": message})
        )
        raise
    save_status(paths, status.model_copy(update={"state": "COMPLETED", "ended_at": now(), "exit_code": 0}))
    print(f"[clusterdeck] {step} {part} completed", flush=True)


def run_chain(run_root: str, plans: list[tuple[str, int, list[str]]]) -> None:
    """The local executor's stand-in for ``afterok``: every part of every step, in order, stopping at a failure."""
    for step, attempt, parts in plans:
        for part in parts:
            run_part(run_root, step, attempt, part)
