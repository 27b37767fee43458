"""What a run directory holds, as typed records: the run record and the per-part job status."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from clusterdeck.jobs import atomic
from clusterdeck.jobs.damage import DamagedRecord, model_problem, read_record
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runspec import spec_model, validate
from clusterdeck.jobs.spec import RunSpec, Section, _section_type
from clusterdeck.jobs.tail.records import Progress

Executor = Literal["local", "slurm"]
Role = Literal["main", "array", "merge"]


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class JobRef(Record):
    """One submitted scheduler job. Arrays are one JobRef with ``tasks`` > 1."""

    job_id: str
    role: Role = "main"
    tasks: int = 1
    submitted_at: float
    parts: list[str]
    """Status parts this job writes: ``main``, ``merge`` or ``task-<k>``."""
    pid_started_at: float | None = None
    """Local executor: the controller process's start time, to tell a reused pid from ours."""

    def task_ids(self) -> list[str]:
        """Scheduler ids of its tasks: ``123`` or ``123_0``, ``123_1``, …"""
        if self.role == "array":
            return [f"{self.job_id}_{k}" for k in range(self.tasks)]
        return [self.job_id]


class Attempt(Record):
    number: int
    submitted_at: float
    jobs: list[JobRef]


class StepRecord(Record):
    name: str
    attempts: list[Attempt] = []

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def attempt_number(self) -> int:
        """The current attempt's number; 0 before the first submission."""
        return self.attempts[-1].number if self.attempts else 0


class FinalState(Record):
    """Cached once a run has ended, so listings need not ask the scheduler again; cleared by resume."""

    state: str
    ended_at: float
    steps: dict[str, str]


class RunRecord(Record):
    run_id: str
    name: str
    created_at: float
    executor: Executor
    steps: list[StepRecord]
    cancelled_at: float | None = None
    final: FinalState | None = None
    outputs: dict[str, dict[str, str]] = {}
    """Per step, where its results are, e.g. ``{"shard": {"dir": …, "index": …}}``."""
    from_config: dict[str, Any] = {}
    """Spec keys the user's ``[defaults]`` filled at submit (``jobs.userconfig``), with their values."""

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    def job_ids(self) -> list[str]:
        return [j.job_id for s in self.steps for a in s.attempts for j in a.jobs]


PartState = Literal["RUNNING", "REQUEUED", "COMPLETED", "FAILED"]


class Start(Record):
    """An earlier start of the same part in the same attempt: the scheduler requeued it (timeout, preemption)."""

    job_id: str
    node: str
    started_at: float
    ended_at: float | None
    state: str
    resumed_from_step: int | None = None


class PartStatus(Record):
    """Written by the job itself, one file per part, by atomic rename."""

    step: str
    attempt: int
    part: str
    state: PartState
    node: str
    job_id: str = ""
    restarts: int = 0
    """SLURM_RESTART_COUNT of the start that wrote this: with ``job_id``, which start of a requeued job it is."""
    rank: int = 0
    """The rank that wrote this: 0, or in a job of several tasks, one that failed (its own file, see ``rundir``)."""
    started_at: float
    ended_at: float | None = None
    exit_code: int | None = None
    error: str = ""
    progress: dict[str, float] = {}
    history: list[Start] = []
    """Earlier starts of this part in this attempt (requeues), oldest first."""

    def as_start(self) -> Start:
        resumed = Progress.of(self.progress).resumed_from_step
        return Start(
            job_id=self.job_id,
            node=self.node,
            started_at=self.started_at,
            ended_at=self.ended_at,
            state=self.state,
            resumed_from_step=None if resumed is None else int(resumed),
        )


M = TypeVar("M", bound=Record)


def _parsed(model: type[M], what: str, path: Path) -> M:
    """The record in ``path``; ``DamagedRecord`` naming it when it is not one (``FileNotFoundError`` passes)."""
    data = read_record(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DamagedRecord(path, model_problem(what, exc)) from None


def save_record(paths: RunPaths, record: RunRecord) -> None:
    atomic.write_json(paths.record, record.model_dump(mode="json"))


def load_record(paths: RunPaths) -> RunRecord:
    """The run record; ``DamagedRecord`` (a ``ValueError``) naming ``run.json`` when it is not one."""
    return _parsed(RunRecord, "a run record", paths.record)


def read_spec_json(paths: RunPaths) -> dict[str, Any]:
    """The run's ``spec.json`` as JSON, its sections checked to be tables; ``DamagedRecord`` when it is not one.

    Only the shape is checked, not every value: a spec written by another version still shows.
    """
    try:
        spec = read_record(paths.spec)
    except FileNotFoundError:
        raise DamagedRecord(paths.spec, "missing (every run has its spec)") from None
    problem = _shape_problem(spec, spec_model(), "")
    if problem is None and not isinstance(spec.get("name"), str):
        problem = "name: not a string"
    if problem is not None:
        raise DamagedRecord(paths.spec, f"not a run spec ({problem})")
    return spec


def _shape_problem(value: Any, model: type[Section], key: str) -> str | None:
    if not isinstance(value, dict):
        return f"{key or 'the spec'}: not a table"
    for name, field in model.model_fields.items():
        section = _section_type(field.annotation)
        if section is not None and value.get(name) is not None:
            problem = _shape_problem(value[name], section, f"{key}{name}")
            if problem is not None:
                return problem
    return None


def load_run_spec(paths: RunPaths, *, check_paths: bool) -> RunSpec:
    """The resolved spec a run was submitted with, validated (problems name ``spec.json``)."""
    return validate(read_spec_json(paths), source=str(paths.spec), check_paths=check_paths)


def save_status(paths: RunPaths, status: PartStatus) -> None:
    path = paths.status(status.step, status.attempt, status.part, status.rank)
    atomic.write_json(path, status.model_dump(mode="json"))


def load_status(paths: RunPaths, step: str, attempt: int, part: str) -> PartStatus | None:
    try:
        return PartStatus.model_validate(atomic.read_json(paths.status(step, attempt, part)))
    except (OSError, ValueError):
        return None


def load_statuses(paths: RunPaths) -> dict[tuple[str, int, str], PartStatus]:
    """Every part's status; ``DamagedRecord`` naming the first file that is not one (they are written whole).

    A part of several tasks may have a file per failed rank beside rank 0's: ``part_status`` makes one of them.
    """
    found: dict[tuple[str, int, str], PartStatus] = {}
    if paths.status_dir.is_dir():
        for file in sorted(paths.status_dir.glob("*.json")):
            try:
                st = _parsed(PartStatus, "a part status", file)
            except FileNotFoundError:
                continue  # removed since it was listed
            key = (st.step, st.attempt, st.part)
            found[key] = part_status(found[key], st) if key in found else st
    return found


def part_status(a: PartStatus, b: PartStatus) -> PartStatus:
    """One status of a part from two ranks' files: the later start's; of one start, rank 0's (its progress,
    its history) with the first failure's state and error. When one rank fails, the others fail after it,
    from a collective that broke: their error says only that a peer went away."""
    if (a.job_id, a.restarts) != (b.job_id, b.restarts):
        return a if a.started_at > b.started_at else b
    main = a if a.rank == 0 else b
    failures = [s for s in (a, b) if s.state == "FAILED"]
    if not failures:
        return main
    first = min(failures, key=lambda s: (s.ended_at or float("inf"), s.rank))
    fields = ("state", "ended_at", "exit_code", "error", "rank")
    return main.model_copy(update={f: getattr(first, f) for f in fields})


def check_run(paths: RunPaths) -> tuple[RunRecord, dict[tuple[str, int, str], PartStatus]]:
    """Reads the run's record, spec and status files: ``DamagedRecord`` naming the first one that is damaged.
    Returns the record and statuses read, so that a caller showing the run need not read them again.

    A directory without ``run.json`` is not a run (or one being created): ``FileNotFoundError``.
    """
    record = load_record(paths)
    read_spec_json(paths)
    return record, load_statuses(paths)


def now() -> float:
    return time.time()
