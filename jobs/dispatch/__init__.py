"""Dispatch: turning a run's steps into scheduler jobs (submitit), reading their state, cancelling them.

Backends are named for the scheduler: ``LocalBackend`` (submitit's LocalExecutor, the
embedded default) and ``SlurmBackend`` (sbatch, sacct, scancel), behind ``Backend``.
"""

from __future__ import annotations

from jobs.dispatch.base import Backend, JobState, PartPlan
from jobs.records import Executor


def backend_for(executor: Executor) -> Backend:
    if executor == "slurm":
        from jobs.dispatch.slurm import SlurmBackend

        return SlurmBackend()
    from jobs.dispatch.local import LocalBackend

    return LocalBackend()


__all__ = ["Backend", "JobState", "PartPlan", "backend_for"]
