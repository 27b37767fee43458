"""Dispatch: turning a run's steps into scheduler jobs (submitit), reading their state, cancelling them.

Backends are named for the scheduler: ``LocalBackend`` (submitit's LocalExecutor, the
embedded default) and ``SlurmBackend`` (sbatch, sacct, scancel), behind ``Backend``.
"""

from __future__ import annotations

from clusterdeck.jobs.dispatch.base import Backend, JobState, PartPlan
from clusterdeck.jobs.records import Executor


def backend_class(executor: Executor) -> type[Backend]:
    if executor == "slurm":
        from clusterdeck.jobs.dispatch.slurm import SlurmBackend

        return SlurmBackend
    from clusterdeck.jobs.dispatch.local import LocalBackend

    return LocalBackend


def backend_for(executor: Executor) -> Backend:
    return backend_class(executor)()


__all__ = ["Backend", "JobState", "PartPlan", "backend_class", "backend_for"]
