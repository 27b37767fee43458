"""A run's state, put together from its record, the jobs' own status files and the scheduler.

The payload knows whether it finished; only the scheduler knows about jobs that never
started, were cancelled, timed out or were killed. A part's state combines both; a step's
and a run's follow from their parts. Scheduler state for every run shown is read with one
query per backend (one ``sacct`` for all SLURM jobs, and one ``squeue --start`` for those
waiting in the queue), never one per job.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from clusterdeck.jobs.damage import DamagedRecord
from clusterdeck.jobs.dispatch import JobState, backend_for
from clusterdeck.jobs.dispatch.base import FAILED_STATES, QueueWait
from clusterdeck.jobs.records import (
    Attempt,
    Executor,
    FinalState,
    JobRef,
    PartStatus,
    RunRecord,
    StepRecord,
    load_record,
    load_statuses,
    now,
    read_spec_json,
    save_record,
)
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runs import ID_TIME_FORMAT, read_whole
from clusterdeck.jobs.runsummary import index_ended

# When parts disagree, the step shows the most telling one.
PRECEDENCE = (*FAILED_STATES, "RUNNING", "REQUEUED", "PENDING", "COMPLETED")
# States of a part, step or run that is not over: REQUEUED waits to start again from its checkpoint.
LIVE = ("RUNNING", "REQUEUED", "PENDING")


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
    history: list[dict[str, Any]] = field(default_factory=list)
    """Earlier starts of this part in the same attempt (requeues): job_id, node, state, resumed_from_step, times."""
    job_alive: bool = False
    """The scheduler still has the part's job (a part can be done while its job is still finishing)."""
    queue: QueueWait | None = None
    """While the part waits in the scheduler's queue (PENDING, or REQUEUED to run again): why, and its expected
    start (``squeue --start``)."""


@dataclass
class AttemptView:
    number: int
    state: str
    job_ids: list[str]
    parts: list[PartView]


@dataclass
class StepView:
    name: str
    state: str
    attempt: int
    job_ids: list[str]
    parts: list[PartView]
    attempts: list[AttemptView] = field(default_factory=list)
    """Every attempt, oldest first; the last is the current one (``state``, ``parts``)."""

    @property
    def ended(self) -> bool:
        return self.state not in LIVE


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
    damaged: str = ""
    """Why the run cannot be shown (state ``DAMAGED``): the file, from the run directory, and what is wrong."""
    from_config: dict[str, Any] = field(default_factory=dict)
    """Spec keys the user's ``[defaults]`` filled at submit (``RunRecord.from_config``)."""

    @property
    def ended(self) -> bool:
        return all(s.ended for s in self.steps)

    @property
    def jobs_alive(self) -> bool:
        return any(p.job_alive for s in self.steps for p in s.parts)

    @property
    def queue(self) -> QueueWait | None:
        """While the run waits (PENDING or REQUEUED, nothing running): the wait of its first part the scheduler
        holds back, in the steps' order, which is the one it waits on."""
        if self.state not in ("PENDING", "REQUEUED"):
            return None
        return next((p.queue for s in self.steps for p in s.parts if p.queue is not None), None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["queue"] = asdict(self.queue) if self.queue else None  # the run's wait, as listings show it
        if not self.damaged:  # only listings hold damaged runs; a view of a whole run reads as it always has
            del data["damaged"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunView:
        """The view ``to_json`` wrote (a remote ``clusterdeck show --json``); fields it does not know are ignored:
        a newer clusterdeck on the login node may have added some (``jobs.protocol``)."""
        from clusterdeck.jobs.protocol import from_fields

        def parts(items: list[dict[str, Any]]) -> list[PartView]:
            return [from_fields(PartView, p, queue=queue_wait(p.get("queue"))) for p in items]

        steps = [
            from_fields(
                StepView,
                s,
                parts=parts(s.get("parts", [])),
                attempts=[from_fields(AttemptView, a, parts=parts(a.get("parts", []))) for a in s.get("attempts", [])],
            )
            for s in data.get("steps", [])
        ]
        return from_fields(cls, data, steps=steps)


def queue_wait(data: dict[str, Any] | None) -> QueueWait | None:
    """The ``QueueWait`` of a document (``RunView.to_json``, a listing's entry); None for none."""
    from clusterdeck.jobs.protocol import from_fields

    return from_fields(QueueWait, data) if data else None


def part_state(status: PartStatus | None, sched: JobState | None, cancelled: bool) -> str:
    if status is not None and status.state == "COMPLETED":
        return "COMPLETED"
    if sched is not None and sched.terminal and sched.state != "COMPLETED":
        return sched.state  # the scheduler's word (TIMEOUT, CANCELLED, …) says more than the payload's FAILED
    if status is not None and sched is not None and sched.state in ("PENDING", "REQUEUED"):
        return "REQUEUED"  # it ran and will run again: it asked (time limit), or SLURM chose (preemption)
    if status is not None and status.state == "FAILED":
        return "CANCELLED" if cancelled else "FAILED"
    gone = sched is not None and sched.state in ("EXITED", "COMPLETED")
    if gone:  # the job ended without the part finishing: it died, or never started after an earlier failure
        return "CANCELLED" if cancelled or status is None else "FAILED"
    if status is not None or (sched is not None and sched.state == "RUNNING"):
        return "RUNNING"
    return "PENDING"


def _error(status: PartStatus | None, sched: JobState | None) -> str:
    """What went wrong: a lost node first (the ranks that survive it only saw a peer vanish), while the job
    ended with it or waits to run again after it; then the part's own words, then the scheduler's reason."""
    if sched is not None and sched.node_failure:
        if sched.state == "NODE_FAIL":
            return sched.node_failure
        if not sched.terminal:
            return f"{sched.node_failure}; SLURM requeued the job"
    return status.error if status else (sched.reason if sched else "")


def _sched_for(job: JobRef, part: str, sched: dict[str, JobState]) -> JobState | None:
    if job.role == "array" and part.startswith("task-"):
        task_id = f"{job.job_id}_{part.removeprefix('task-')}"
        return sched.get(task_id) or next((s for k, s in sched.items() if k.startswith(f"{job.job_id}_[")), None)
    return sched.get(job.job_id)


def step_view(
    step: StepRecord, statuses: dict[tuple[str, int, str], PartStatus], sched: dict[str, JobState], cancelled: bool
) -> StepView:
    attempts = [_attempt_view(step.name, a, statuses, sched, cancelled) for a in step.attempts]
    if not attempts:
        return StepView(step.name, "PENDING", 0, [], [])
    current = attempts[-1]
    return StepView(step.name, current.state, current.number, current.job_ids, current.parts, attempts)


def _attempt_view(
    step: str,
    attempt: Attempt,
    statuses: dict[tuple[str, int, str], PartStatus],
    sched: dict[str, JobState],
    cancelled: bool,
) -> AttemptView:
    parts = []
    for job in attempt.jobs:
        for part in job.parts:
            status = statuses.get((step, attempt.number, part))
            js = _sched_for(job, part, sched)
            state = part_state(status, js, cancelled)
            parts.append(
                PartView(
                    part=part,
                    state=state,
                    job_id=(status.job_id if status and status.job_id else job.job_id),
                    node=(js.node if js and js.node else status.node if status else ""),
                    error=_error(status, js),
                    started_at=status.started_at if status else None,
                    ended_at=status.ended_at if status else None,
                    exit_code=js.exit_code
                    if js and js.exit_code
                    else (str(status.exit_code) if status and status.exit_code is not None else ""),
                    progress=dict(status.progress) if status else {},
                    history=[h.model_dump() for h in status.history] if status else [],
                    job_alive=js is not None and not js.terminal and js.state != "EXITED",
                    queue=js.queue if js is not None and state in ("PENDING", "REQUEUED") else None,
                )
            )
    state = min((p.state for p in parts), key=PRECEDENCE.index, default="PENDING")
    if state in FAILED_STATES and any(p.state in LIVE for p in parts):
        state = next(s for s in LIVE if any(p.state == s for p in parts))  # not over yet
    return AttemptView(attempt.number, state, [j.job_id for j in attempt.jobs], parts)


def run_state(steps: list[StepView]) -> str:
    states = [s.state for s in steps]
    for bad in FAILED_STATES:
        if bad in states:
            return bad
    if all(s == "COMPLETED" for s in states):
        return "COMPLETED"
    return next((s for s in LIVE if s in states), "PENDING")


def view_runs(runs: list[RunPaths], *, use_final: bool = True) -> list[RunView]:
    """Views of many runs; finished runs answer from their record, live ones from one query per backend.

    A run whose record or status files are damaged is a ``DAMAGED`` view naming the file.
    """
    return views_of(load_records(runs), use_final)


def load_records(runs: list[RunPaths]) -> list[tuple[RunPaths, RunRecord | DamagedRecord]]:
    """The records of ``runs``, or what is wrong with them; a run without ``run.json`` is left out."""
    loaded: list[tuple[RunPaths, RunRecord | DamagedRecord]] = []
    for paths in runs:
        try:
            loaded.append((paths, load_record(paths)))
        except FileNotFoundError:
            continue  # a run directory still being created, or removed since it was listed
        except DamagedRecord as exc:
            loaded.append((paths, exc))
    return loaded


def views_of(
    loaded: list[tuple[RunPaths, RunRecord | DamagedRecord]],
    use_final: bool = True,
    statuses: dict[tuple[str, int, str], PartStatus] | None = None,
) -> list[RunView]:
    """``view_runs`` of records already read (``load_records``), one view each, in their order."""
    records = [(paths, r) for paths, r in loaded if isinstance(r, RunRecord)]
    live: dict[Executor, list[JobRef]] = {}
    for _, record in records:
        if not (use_final and record.final):
            # every attempt's jobs, so that a run's history shows how each ended; still one query per backend
            live.setdefault(record.executor, []).extend(j for s in record.steps for a in s.attempts for j in a.jobs)
    sched: dict[str, JobState] = {}
    for executor, jobs in live.items():
        sched.update(backend_for(executor).states(jobs))
    views = []
    for paths, record in loaded:
        try:
            if isinstance(record, DamagedRecord):
                raise record
            views.append(_view(paths, record, sched, use_final, statuses))
        except DamagedRecord as exc:
            views.append(damaged_view(paths, exc))
    return views


def view_run(paths: RunPaths) -> RunView:
    """The run's state now; a ``UserError`` naming the file when its record, spec or a status file is damaged.

    Its record and status files are read once (``watch`` polls this every few seconds): as checked, then shown.
    """
    record, statuses = read_whole(paths)
    return views_of([(paths, record)], use_final=False, statuses=statuses)[0]


def damaged_view(paths: RunPaths, damage: DamagedRecord) -> RunView:
    """A run that cannot be read, as listings show it: its id, when it was made (from the id), why."""
    try:
        created = time.mktime(time.strptime(paths.run_id[:15], ID_TIME_FORMAT))
    except ValueError:
        try:
            created = os.stat(paths.root).st_mtime
        except OSError:
            created = 0.0
    return RunView(paths.run_id, "", "DAMAGED", "", created, None, [], {}, str(paths.root), damage.within(paths.root))


def _view(
    paths: RunPaths,
    record: RunRecord,
    sched: dict[str, JobState],
    use_final: bool,
    statuses: dict[tuple[str, int, str], PartStatus] | None = None,
) -> RunView:
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
            from_config=record.from_config,
        )
    if statuses is None:
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
        from_config=record.from_config,
    )
    if view.ended:
        ends = [p.ended_at for s in steps for p in s.parts if p.ended_at]
        view.ended_at = max(ends) if ends else now()
        _remember_final(paths, record, view, statuses)
    return view


def _remember_final(
    paths: RunPaths,
    record: RunRecord,
    view: RunView,
    statuses: dict[tuple[str, int, str], PartStatus] | None = None,
) -> None:
    """Caches the final state in the record, and then the run's line in its runs root's index of ended runs
    (``jobs.runindex``), so that a listing reads neither again.

    Nothing is cached for a damaged run (its spec is checked first: ``clusterdeck ls`` lists it DAMAGED
    and must leave every file as it was). The record is read again just before it is replaced, and
    nothing is cached when it changed since it was read (a ``resume`` adding an attempt at the same
    moment): there is no lock on NFS, so this compare-before-rename only shrinks that window, and a
    later listing caches the final state of whatever the record then says.
    """
    if record.final is not None:
        return
    final = FinalState(state=view.state, ended_at=view.ended_at or now(), steps={s.name: s.state for s in view.steps})
    try:
        spec = read_spec_json(paths)
        if load_record(paths) != record:
            return
        if statuses is None:
            statuses = load_statuses(paths)
    except (DamagedRecord, OSError):  # OSError: FileNotFoundError too (removed since), and unreadable
        return
    ended = record.model_copy(update={"final": final})
    try:
        save_record(paths, ended)
    except OSError:  # a read-only viewer still gets the right answer
        return
    index_ended(paths, ended, spec, statuses)
