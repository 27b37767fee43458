"""What every backend does: submit the parts of some steps, report job states, cancel."""

from __future__ import annotations

import abc
from collections.abc import Collection
from dataclasses import dataclass

from clusterdeck.jobs.records import JobRef
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec

# sacct's words for a job that ended without success.
FAILED_STATES = (
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "LOST",
)
TERMINAL = {"COMPLETED", *FAILED_STATES}


@dataclass(frozen=True)
class PartPlan:
    """The parts of one step's attempt, in order: ``["main"]`` or ``["task-0", …, "merge"]``."""

    step: str
    attempt: int
    parts: list[str]


@dataclass(frozen=True)
class QueueWait:
    """Why the scheduler holds a job back, and when it expects to start it (``jobs.dispatch.queue``)."""

    reason: str
    """The scheduler's own word: ``Priority``, ``Dependency``, ``QOSMaxJobsPerUserLimit`` …"""
    text: str
    """The reason in words (``waiting behind jobs of higher priority``); an unknown one as the scheduler names it."""
    expected_start: float | None = None
    """When the scheduler expects to start the job (``squeue --start``, seconds since the epoch); None: unknown."""


class SchedulerWarning(UserWarning):
    """Something a submission may trip on that the user may know better about (``Backend.preflight``); the CLI
    prints it as ``clusterdeck: warning: …`` and submits all the same."""


@dataclass(frozen=True)
class JobState:
    """What the scheduler says of one job or array task."""

    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, … (sacct's words)
    node: str = ""
    exit_code: str = ""
    reason: str = ""
    node_failure: str = ""
    """Set when a run of this job ended NODE_FAIL: which node failed, e.g. "node node2 (Not responding) failed"."""
    queue: QueueWait | None = None
    """Set while the job waits in the queue: why, and when it may start."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


class Backend(abc.ABC):
    name: str

    @abc.abstractmethod
    def submit(self, paths: RunPaths, spec: RunSpec, plans: list[PartPlan]) -> dict[str, list[JobRef]]:
        """Submits the steps in order, each after the previous succeeded; returns the jobs of each step."""

    @classmethod
    @abc.abstractmethod
    def preview(cls, paths: RunPaths, spec: RunSpec, plans: list[PartPlan]) -> dict[str, str]:
        """What ``submit`` would hand the scheduler (scripts or commands), by job; submits nothing."""

    def preflight(self, spec: RunSpec, steps: Collection[str]) -> list[str]:
        """Checks of ``steps``' resources against the scheduler, before anything is written or submitted: a
        ``UserError`` naming each key it refuses; returns warnings (things the user may know better about)."""
        return []

    @abc.abstractmethod
    def states(self, jobs: list[JobRef]) -> dict[str, JobState]:
        """Scheduler state by task id (``123``, ``123_4``), for all jobs in one query."""

    @abc.abstractmethod
    def cancel(self, jobs: list[JobRef]) -> None:
        """Asks the scheduler to end these jobs; returns without waiting."""
