"""One export, start to end, for the CLI and for the ``[export]`` step of a run: plan, report, check, write."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterdeck.jobs.export.plan import ExportPlan, check_outputs, describe, plan_export, samples_line, spec_key
from clusterdeck.jobs.export.write import ExportResult, Progress, write_export
from clusterdeck.jobs.formats.base import Key
from clusterdeck.jobs.signals import interrupted_by_termination
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps.export_spec import ExportSpec, export_input
from clusterdeck.jobs.train.sizing import task_cpus


def export_workers(spec: ExportSpec) -> int:
    """Decoding processes: 'auto' is the task's CPUs (the main process formats while they decode)."""
    return task_cpus() if spec.workers == "auto" else int(spec.workers)


def plan_for_log(plan: ExportPlan) -> str:
    """The plan as a job log says it: the sample counts as the CLI's plan says them, then the ``export-plan``
    document's figures on one line (the whole text plan is ``app.render.plan``'s, and jobs never imports app)."""
    return f"{samples_line(plan)}\nplan {json.dumps(describe(plan))}"


def export(
    spec: ExportSpec,
    input_path: Path,
    *,
    key: Key = spec_key,
    say: Callable[[str], None] = print,
    show_plan: Callable[[ExportPlan], str] = plan_for_log,
    on_progress: Progress | None = None,
) -> tuple[ExportPlan, ExportResult]:
    """Plans the export, says what it will write (``show_plan``: the sample count before any file is written),
    then writes it."""
    plan = plan_export(spec, input_path, key)
    check_outputs(plan, key)
    say(show_plan(plan))
    with interrupted_by_termination():
        result = write_export(plan, export_workers(spec), on_progress)
    say(summary(plan, result))
    return plan, result


def summary(plan: ExportPlan, result: ExportResult) -> str:
    total = result.total_bytes
    target = f" (target {plan.spec.size_gb:g} GB)" if plan.spec.size_gb is not None else ""
    rate = total / 1e6 / max(result.seconds, 1e-9)
    return (
        f"wrote {plan.samples:,} samples, {total / 1e9:.3f} GB{target} in {len(result.files)} files "
        f"to {plan.spec.out} in {result.seconds:.1f} s ({rate:.0f} MB/s)"
    )


def run_export_step(spec: RunSpec, report: Callable[[dict[str, Any]], None]) -> None:
    """The ``[export]`` step: its progress goes to the part's status, its plan and summary to the job log."""
    assert spec.export is not None

    def say(text: str) -> None:
        print("\n".join(f"[export] {line}" for line in text.splitlines()), flush=True)

    export(spec.export, export_input(spec), say=say, on_progress=report)
