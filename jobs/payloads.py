"""What runs inside a scheduler job: one part of a step, recording its own status.

These functions are pickled by submitit and called on the compute node. They read the
resolved spec from the run directory, write ``status/<step>.<attempt>.<part>.json`` when
they start and end (rank 0 only, in a multi-task job, and a failing rank to a file of its own,
naming itself in the error), and print progress to stdout (the job's log). The step kind
(``jobs.steps.registry``) runs the part; a step that checkpoints itself is wrapped in a submitit
``Checkpointable``, so a job that reaches its time limit saves its state and is requeued instead of failing.
"""

from __future__ import annotations

import socket
import sys
import traceback
from pathlib import Path
from typing import Any

import submitit

from clusterdeck.jobs.errors import RequeueJob, UserError
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.records import PartStatus, Start, load_run_spec, load_status, now, save_status
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps import registry
from clusterdeck.jobs.steps.base import PartContext
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.telemetry.sampler import Sampler
from clusterdeck.jobs.world import World, job_world


def run_part(run_root: str, step: str, attempt: int, part: str) -> None:
    """Runs one part of a step and records how it ended; a failure is re-raised for the scheduler."""
    paths = RunPaths(Path(run_root))
    world = job_world()
    rank = world.rank
    status = PartStatus(
        step=step,
        attempt=attempt,
        part=part,
        state="RUNNING",
        node=socket.gethostname(),
        job_id=world.job_id,
        restarts=world.restarts,
        rank=rank,
        started_at=now(),
        history=_earlier_starts(load_status(paths, step, attempt, part), world),
    )

    def save(update: dict[str, Any]) -> None:
        nonlocal status
        status = status.model_copy(update=update)
        if rank == 0 or status.state == "FAILED":  # a failing rank says why (its own file); srun ends the others
            save_status(paths, status)

    said: list[BaseException] = []

    def failed(exc: BaseException) -> None:
        """Records ``exc`` as this rank's failure, once: a rank of several says why before it leaves the process
        group (``jobs.train.distributed``), and that error comes out here again."""
        if any(exc is e for e in said):
            return
        message = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
        if not isinstance(exc, (UserError, KeyboardInterrupt)):
            traceback.print_exception(exc)
        if world.world > 1:
            message = f"rank {rank} on {status.node}: {message}"
        _failed(save, step, part, message)
        said.append(exc)

    save({})
    n = len(status.history)
    requeues = f", after {n} requeue{'s' if n > 1 else ''}" if n else ""
    print(
        f"[clusterdeck] {step} {part} (attempt {attempt}{requeues}) rank {rank} on {status.node}, job {status.job_id}",
        flush=True,
    )
    try:
        spec = load_run_spec(paths, check_paths=False)
        kind = registry.step(step)
        with _sampler(paths, spec, world, attempt) as sampler:
            report = lambda progress: save({"progress": progress})  # noqa: E731
            kind.run(PartContext(paths, spec, attempt, part, report, sampler, failed))
    except RequeueJob as rq:
        print(f"[clusterdeck] {step} {part}: {rq}; requeueing", flush=True)
        save({"state": "REQUEUED", "ended_at": now(), "error": str(rq)})
        try:
            rq.requeue()
        except Exception as exc:
            _failed(save, step, part, f"{rq}, but the job could not be requeued: {exc}")
            raise
    except SystemExit as exc:
        if exc.code != -1:
            raise
        # submitit's own USR2 handler (a signal before ours was installed) requeued the job and exits with -1
        save({"state": "REQUEUED", "ended_at": now(), "error": "requeued by submitit before the step started"})
        raise
    except BaseException as exc:
        failed(exc)
        if isinstance(exc, UserError):  # said in one line; submitit would log a traceback of any exception
            raise SystemExit(exc.exit_code or 1) from None
        raise
    print(f"[clusterdeck] {step} {part} completed", flush=True)  # before the status: a follower stops on it
    save({"state": "COMPLETED", "ended_at": now(), "exit_code": 0})


def _earlier_starts(earlier: PartStatus | None, world: World) -> list[Start]:
    """The starts of this part before this one. The status file may already hold this very start, written by
    rank 0 a moment ago (same job, same SLURM restart count): a rank that reads it then is not a restart."""
    if earlier is None:
        return []
    if earlier.job_id == world.job_id and earlier.restarts == world.restarts:
        return list(earlier.history)
    return [*earlier.history, earlier.as_start()]


def _failed(save: Any, step: str, part: str, message: str) -> None:
    print(f"[clusterdeck] {step} {part} failed: {message}", file=sys.stderr, flush=True)
    save({"state": "FAILED", "ended_at": now(), "exit_code": 1, "error": message})


def _sampler(paths: RunPaths, spec: RunSpec, world: World, attempt: int) -> Sampler:
    """This task's telemetry thread, writing to its own file (see ``jobs.rundir``); never a reason to fail."""
    interval, pipeline = spec.telemetry.interval_s, None
    if interval > 0:
        try:
            paths.telemetry_dir.mkdir(exist_ok=True)
            pipeline = Pipeline()  # shared memory and a semaphore: a container may have neither
        except OSError as exc:
            print(f"[clusterdeck] telemetry off: {exc}", file=sys.stderr, flush=True)
            interval = 0
    writer = MetricsWriter(paths.telemetry(world.job_id, world.rank), rank=world.rank, attempt=attempt)
    return Sampler(writer, pipeline, interval=interval, node_wide=world.local_rank == 0)


class CheckpointablePart(submitit.helpers.Checkpointable):
    """``run_part`` for steps that checkpoint themselves: submitit requeues it on timeout or preemption.

    The state lives in the run directory (``checkpoints/last.pt``), so the resubmitted call is
    the same call: it finds the checkpoint and continues from it.
    """

    def __call__(self, run_root: str, step: str, attempt: int, part: str) -> None:
        run_part(run_root, step, attempt, part)


def run_chain(run_root: str, plans: list[tuple[str, int, list[str]]]) -> None:
    """The local executor's stand-in for ``afterok``: every part of every step, in order, stopping at a failure."""
    for step, attempt, parts in plans:
        for part in parts:
            run_part(run_root, step, attempt, part)
