"""A run's state, put together from its record, the jobs' own status files and the scheduler.

The payload knows whether it finished; only the scheduler knows about jobs that never
started, were cancelled, timed out or were killed. A part's state combines both; a step's
and a run's follow from their parts. Scheduler state for every run shown is read with one
query per backend (one ``sacct`` for all SLURM jobs), never one per job.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.dispatch import JobState, backend_for
from jobs.dispatch.base import FAILED_STATES
from jobs.records import (
    Executor,
    FinalState,
    JobRef,
    PartStatus,
    RunRecord,
    StepRecord,
    load_record,
    load_statuses,
    now,
    save_record,
)
from jobs.rundir import RunPaths

# When parts disagree, the step shows the most telling one.
PRECEDENCE = (*FAILED_STATES, "RUNNING", "PENDING", "COMPLETED")


@dataclass
class PartView:
    part: str
    state: str
    job_id: str
    node: str = ""
    error: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: str = ""
    progress: dict[str, float] = field(default_factory=dict)


@dataclass
class StepView:
    name: str
    state: str
    attempt: int
    job_ids: list[str]
    parts: list[PartView]

    @property
    def ended(self) -> bool:
        return self.state not in ("RUNNING", "PENDING")


@dataclass
class RunView:
    run_id: str
    name: str
    state: str
    executor: str
    created_at: float
    ended_at: float | None
    steps: list[StepView]
    outputs: dict[str, dict[str, str]]
    path: str

    @property
    def ended(self) -> bool:
        return all(s.ended for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def part_state(status: PartStatus | None, sched: JobState | None, cancelled: bool) -> str:
    if status is not None and status.state == "COMPLETED":
        return "COMPLETED"
    if sched is not None and sched.terminal and sched.state != "COMPLETED":
        return sched.state  # the scheduler's word (TIMEOUT, CANCELLED, …) says more than the payload's FAILED
    if status is not None and status.state == "FAILED":
        return "CANCELLED" if cancelled else "FAILED"
    gone = sched is not None and sched.state in ("EXITED", "COMPLETED")
    if gone:  # the job ended without the part finishing: it died, or never started after an earlier failure
        return "CANCELLED" if cancelled or status is None else "FAILED"
    if status is not None or (sched is not None and sched.state == "RUNNING"):
        return "RUNNING"
    return "PENDING"


def _sched_for(job: JobRef, part: str, sched: dict[str, JobState]) -> JobState | None:
    if job.role == "array" and part.startswith("task-"):
        task_id = f"{job.job_id}_{part.removeprefix('task-')}"
        return sched.get(task_id) or next((s for k, s in sched.items() if k.startswith(f"{job.job_id}_[")), None)
    return sched.get(job.job_id)


def step_view(
    step: StepRecord, statuses: dict[tuple[str, int, str], PartStatus], sched: dict[str, JobState], cancelled: bool
) -> StepView:
    attempt = step.current
    if attempt is None:
        return StepView(step.name, "PENDING", 0, [], [])
    parts = []
    for job in attempt.jobs:
        for part in job.parts:
            status = statuses.get((step.name, attempt.number, part))
            js = _sched_for(job, part, sched)
            parts.append(
                PartView(
                    part=part,
                    state=part_state(status, js, cancelled),
                    job_id=(status.job_id if status and status.job_id else job.job_id),
                    node=(js.node if js and js.node else status.node if status else ""),
                    error=status.error if status else (js.reason if js else ""),
                    started_at=status.started_at if status else None,
                    ended_at=status.ended_at if status else None,
                    exit_code=js.exit_code
                    if js and js.exit_code
                    else (str(status.exit_code) if status and status.exit_code is not None else ""),
                    progress=dict(status.progress) if status else {},
                )
            )
    state = min((p.state for p in parts), key=PRECEDENCE.index, default="PENDING")
    if state in FAILED_STATES and any(p.state in ("RUNNING", "PENDING") for p in parts):
        state = "RUNNING" if any(p.state == "RUNNING" for p in parts) else "PENDING"  # not over yet
    return StepView(step.name, state, attempt.number, [j.job_id for j in attempt.jobs], parts)


def run_state(steps: list[StepView]) -> str:
    states = [s.state for s in steps]
    for bad in FAILED_STATES:
        if bad in states:
            return bad
    if all(s == "COMPLETED" for s in states):
        return "COMPLETED"
    return "RUNNING" if "RUNNING" in states else "PENDING"


def view_runs(runs: list[RunPaths], *, use_final: bool = True) -> list[RunView]:
    """Views of many runs; finished runs answer from their record, live ones from one query per backend."""
    records: list[tuple[RunPaths, RunRecord]] = []
    for paths in runs:
        try:
            records.append((paths, load_record(paths)))
        except (OSError, ValueError):
            continue  # a run directory still being created, or not ours
    live: dict[Executor, list[JobRef]] = {}
    for _, record in records:
        if not (use_final and record.final):
            live.setdefault(record.executor, []).extend(j for s in record.steps if s.current for j in s.current.jobs)
    sched: dict[str, JobState] = {}
    for executor, jobs in live.items():
        sched.update(backend_for(executor).states(jobs))
    return [_view(paths, record, sched, use_final) for paths, record in records]


def view_run(paths: RunPaths) -> RunView:
    return view_runs([paths], use_final=False)[0]


def _view(paths: RunPaths, record: RunRecord, sched: dict[str, JobState], use_final: bool) -> RunView:
    if use_final and record.final:
        steps = [
            StepView(name, state, record.step(name).attempt_number, [], [])
            for name, state in record.final.steps.items()
        ]
        return RunView(
            record.run_id,
            record.name,
            record.final.state,
            record.executor,
            record.created_at,
            record.final.ended_at,
            steps,
            record.outputs,
            str(paths.root),
        )
    statuses = load_statuses(paths)
    cancelled = record.cancelled_at is not None
    steps = [step_view(s, statuses, sched, cancelled) for s in record.steps]
    view = RunView(
        record.run_id,
        record.name,
        run_state(steps),
        record.executor,
        record.created_at,
        None,
        steps,
        record.outputs,
        str(paths.root),
    )
    if view.ended:
        ends = [p.ended_at for s in steps for p in s.parts if p.ended_at]
        view.ended_at = max(ends) if ends else now()
        _remember_final(paths, record, view)
    return view


def _remember_final(paths: RunPaths, record: RunRecord, view: RunView) -> None:
    """Caches the final state in the record, so listing a thousand old runs costs a thousand small reads."""
    if record.final is None:
        final = FinalState(
            state=view.state, ended_at=view.ended_at or now(), steps={s.name: s.state for s in view.steps}
        )
        with contextlib.suppress(OSError):  # a read-only viewer still gets the right answer
            save_record(paths, record.model_copy(update={"final": final}))
