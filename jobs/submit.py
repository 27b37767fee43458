"""Submitting, resuming, cancelling and waiting for runs: the calls the CLI and the app share."""

from __future__ import annotations

import contextlib
import shutil
import time
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from clusterdeck.jobs import atomic, runindex
from clusterdeck.jobs.dispatch import PartPlan, backend_class, backend_for
from clusterdeck.jobs.dispatch.base import SchedulerWarning
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.extras import require
from clusterdeck.jobs.records import (
    Attempt,
    JobRef,
    RunRecord,
    StepRecord,
    load_record,
    load_run_spec,
    now,
    save_record,
)
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runs import create_run_dir, default_runs_root
from clusterdeck.jobs.runsummary import generation
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.status import RunView, view_run
from clusterdeck.jobs.steps import registry


def runs_root_for(spec: RunSpec | None, override: Path | None = None) -> Path:
    if override is not None:
        return override
    if spec is not None and spec.cluster.runs_root is not None:
        return spec.cluster.runs_root
    return default_runs_root()


def outputs_of(spec: RunSpec, paths: RunPaths) -> dict[str, dict[str, str]]:
    """Where each step's results go, for the steps that leave some."""
    outputs = {name: registry.step(name).outputs(spec, paths) for name in spec.steps}
    return {name: where for name, where in outputs.items() if where}


def preflight(spec: RunSpec, steps: Collection[str] | None = None) -> None:
    """Checks that need the filesystem, done before any job is submitted; ``steps``: those about to run (resume)."""
    if not spec.steps:
        raise UserError(f"spec: {nothing_to_run()}")
    for name in spec.steps:
        step = registry.step(name)
        if steps is None or name in steps:
            require(getattr(step, "needs", ()), f"[{name}]")  # a plugin's step may predate the attribute
        step.preflight(spec, will_run=steps is None or name in steps)


def nothing_to_run() -> str:
    sections = [f"[{s.name}]" for s in registry.steps()]
    return f"nothing to run; add a {', '.join(sections[:-1])} or {sections[-1]} section"


def submit_run(spec: RunSpec, runs_root: Path | None = None, from_config: dict[str, Any] | None = None) -> RunPaths:
    """Checks the spec (its inputs, then its resources against the scheduler: ``SchedulerWarning`` for what the
    user may know better), makes the run directory and submits the steps; ``from_config``: the keys the user's
    ``[defaults]`` filled, kept in the record."""
    preflight(spec)
    backend = backend_for(spec.cluster.executor)
    _warn(backend.preflight(spec, spec.steps))
    paths = create_run_dir(runs_root_for(spec, runs_root))
    if runs_root is None and spec.cluster.runs_root is not None:
        _point_from_default_root(spec, paths)
    atomic.write_json(paths.spec, spec.model_dump(mode="json"))
    record = RunRecord(
        run_id=paths.run_id,
        name=spec.name,
        created_at=now(),
        executor=spec.cluster.executor,
        steps=[StepRecord(name=s) for s in spec.steps],
        outputs=outputs_of(spec, paths),
        from_config=from_config or {},
    )
    plans = first_plans(spec)
    try:
        jobs = backend.submit(paths, spec, plans)
    except Exception as exc:
        shutil.rmtree(paths.root, ignore_errors=True)
        raise UserError(f"submission to {backend.name} failed: {_first_line(exc)}") from None
    save_record(paths, _with_attempts(record, plans, jobs))
    return paths


def _point_from_default_root(spec: RunSpec, paths: RunPaths) -> None:
    """A run under a spec's own runs root leaves a pointer in the default root's index, so that ``logs RUN`` and
    the other commands find it from there without ``--runs-root`` (``jobs.runs.resolve_run``)."""
    try:
        home = default_runs_root()
    except UserError:  # a bad [defaults] runs_root: said by the next command that lists
        return
    if home.resolve() == paths.root.parent.resolve():
        return
    line = runindex.elsewhere_line(paths.run_id, spec.name, str(paths.root))
    if line is None:
        return
    try:
        home.mkdir(parents=True, exist_ok=True)
        runindex.append(home, [line])
    except (OSError, UserError) as exc:  # the run itself is fine: only the shortcut is missing
        warnings.warn(
            SchedulerWarning(
                f"{home}: cannot note run {paths.run_id} there ({getattr(exc, 'strerror', None) or exc}); find it with "
                f"--runs-root {paths.root.parent}"
            ),
            stacklevel=2,
        )


def first_plans(spec: RunSpec) -> list[PartPlan]:
    return [PartPlan(name, 1, registry.step(name).parts(spec)) for name in spec.steps]


def preview_run(spec: RunSpec, runs_root: Path | None = None) -> dict[str, str]:
    """What ``submit_run`` would hand the scheduler for ``spec``, by job (sbatch scripts for SLURM)."""
    paths = RunPaths(runs_root_for(spec, runs_root) / "RUN_ID")
    return backend_class(spec.cluster.executor).preview(paths, spec, first_plans(spec))


def resume_run(paths: RunPaths) -> RunPaths | None:
    """Re-submits the first step that did not complete and every step after it; None if all completed.

    Each step resubmitted gets one attempt more: the record's generation after it is known before the
    submission, and the runs index is told first (``_reopen``).
    """
    record = load_record(paths)
    view = view_run(paths)
    if not view.ended:
        raise UserError(f"run {paths.run_id} is {view.state}; wait for it or cancel it before resuming")
    first = next((i for i, s in enumerate(view.steps) if s.state != "COMPLETED"), None)
    if first is None:
        return None
    todo = [s.name for s in view.steps[first:]]
    spec = load_run_spec(paths, check_paths=True)  # inputs may have moved since the first submission
    preflight(spec, todo)
    plans = [PartPlan(name, record.step(name).attempt_number + 1, registry.step(name).parts(spec)) for name in todo]
    backend = backend_for(record.executor)
    _warn(backend.preflight(spec, todo))
    _reopen(paths, generation(record) + len(plans))
    try:
        jobs = backend.submit(paths, spec, plans)
    except Exception as exc:
        raise UserError(f"resubmission to {backend.name} failed: {_first_line(exc)}") from None
    record = record.model_copy(update={"cancelled_at": None, "final": None})
    save_record(paths, _with_attempts(record, plans, jobs))
    # Again, once submitted: on NFS a rebuild that read the index just before the first line landed can miss it
    # (another client's append is not always seen through an open file); a duplicate line is harmless.
    with contextlib.suppress(OSError):
        runindex.append(paths.root.parent, [runindex.reopened_line(paths.run_id, generation(record))])
    return paths


def _reopen(paths: RunPaths, generation: int) -> None:
    """Tells the runs root's index that the run is live again, before anything is resubmitted: a listing then
    reads its record instead of the index's line of the generation that ended (``jobs.runindex``)."""
    try:
        runindex.reopen(paths.root.parent, paths.run_id, generation)
    except OSError as exc:
        raise UserError(
            f"{runindex.index_path(paths.root.parent)}: cannot record there that run {paths.run_id} is live again "
            f"({exc.strerror or exc}); nothing was resubmitted (make the file writable for the group, or remove "
            "it: the next listing rebuilds it)"
        ) from None


def cancel_run(paths: RunPaths) -> RunView:
    record = load_record(paths)
    view = view_run(paths)
    if view.ended:
        return view
    save_record(paths, record.model_copy(update={"cancelled_at": now()}))
    live = {j for s in view.steps if not s.ended for j in s.job_ids}
    jobs = [j for s in record.steps if s.current for j in s.current.jobs if j.job_id in live]
    backend_for(record.executor).cancel(jobs)
    return view_run(paths)


def wait_run(
    paths: RunPaths,
    poll_s: float = 1.0,
    on_update: Callable[[RunView], None] | None = None,
    view_of: Callable[[RunPaths], RunView] = view_run,
) -> RunView:
    """Polls ``view_of`` (this machine's ``view_run``, or a deck's) until the run has ended."""
    while True:
        view = view_of(paths)
        if on_update is not None:
            on_update(view)
        if view.ended:
            return view
        time.sleep(poll_s)


def _with_attempts(record: RunRecord, plans: list[PartPlan], jobs: dict[str, list[JobRef]]) -> RunRecord:
    steps = []
    for step in record.steps:
        plan = next((p for p in plans if p.step == step.name), None)
        if plan is not None:
            step = step.model_copy(
                update={
                    "attempts": [*step.attempts, Attempt(number=plan.attempt, submitted_at=now(), jobs=jobs[step.name])]
                }
            )
        steps.append(step)
    return record.model_copy(update={"steps": steps})


def _warn(texts: list[str]) -> None:
    for text in texts:
        warnings.warn(SchedulerWarning(text), stacklevel=3)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text
