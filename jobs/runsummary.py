"""What the runs list shows of a run beyond its state: its size from the spec, its figures from the parts'
last reports, and the whole entry of an ended run, as the runs index keeps it (``jobs.runindex``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from clusterdeck.jobs import runindex
from clusterdeck.jobs.records import PartStatus, RunRecord
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.steps.registry import steps
from clusterdeck.jobs.tail.records import Progress

Figures = tuple[float | None, float | None, float | None]
"""(progress 0..1, images/s, best top-1)."""


def generation(record: RunRecord) -> int:
    """The record's attempts over every step: each resume adds one per step it resubmits, so a record made
    live again always has a higher generation than the one that ended (``jobs.runindex``)."""
    return sum(len(s.attempts) for s in record.steps)


def size_of(spec: dict[str, Any]) -> tuple[int, int]:
    """(nodes, GPUs) of the biggest step, as the spec (``spec.json``, as read) asks for them."""
    size = (1, 0)
    if (spec.get("cluster") or {}).get("executor") == "slurm":
        for step in steps():
            r = (spec.get(step.name) or {}).get("resources") or {}
            nodes, gpus = r.get("nodes", 1), r.get("gpus_per_node", 0)
            if type(nodes) is int and type(gpus) is int:  # another version's values are not counted
                size = max(size, (nodes, nodes * gpus), key=lambda s: (s[1], s[0]))
    return size


def figures(reports: Iterable[tuple[str, dict[str, float]]], state: str) -> Figures:
    """The figures of a run in ``state`` from its parts' (state, progress report): the last train report's,
    a running shard step's share of files."""
    progress: float | None = None
    images_per_s = best = None
    for part_state, report in reports:
        p = Progress.of(report)
        if p.steps_total:
            progress = (p.step or 0.0) / p.steps_total
            images_per_s = p.images_per_s if p.images_per_s is not None else images_per_s
            best = p.best_top1 if p.best_top1 is not None else best
        elif p.shards_total and part_state == "RUNNING":
            progress = (p.shards_done or 0.0) / p.shards_total
    if state == "COMPLETED":
        progress = 1.0
    return progress, images_per_s, best


def last_reports(statuses: dict[tuple[str, int, str], PartStatus]) -> list[tuple[str, dict[str, float]]]:
    """Each step's last part status (its latest attempt) as (state, report): an ended run's figures."""
    last = {}
    for (step, _, _), status in sorted(statuses.items()):
        last[step] = (status.state, status.progress)
    return list(last.values())


def ended_entry(
    record: RunRecord, spec: dict[str, Any], statuses: dict[tuple[str, int, str], PartStatus]
) -> dict[str, Any]:
    """The runs list's entry of a run whose record says its final state (``runindex.ENTRY_KEYS``, no path)."""
    assert record.final is not None
    progress, images_per_s, best = figures(last_reports(statuses), record.final.state)
    nodes, gpus = size_of(spec)
    return {
        "run_id": record.run_id,
        "name": record.name,
        "state": record.final.state,
        "executor": record.executor,
        "created_at": record.created_at,
        "ended_at": record.final.ended_at,
        "steps": dict(record.final.steps),
        "progress": progress,
        "nodes": nodes,
        "gpus": gpus,
        "images_per_s": images_per_s,
        "best_top1": best,
    }


def index_ended(
    paths: RunPaths, record: RunRecord, spec: dict[str, Any], statuses: dict[tuple[str, int, str], PartStatus]
) -> None:
    """Appends the run's ``ended`` line to its runs root's index, where it can (a read-only viewer cannot:
    the record is read again by the next listing, as before there was an index)."""
    line = runindex.ended_line(paths.run_id, generation(record), ended_entry(record, spec, statuses))
    if line is not None:
        with contextlib.suppress(OSError):
            runindex.append(paths.root.parent, [line])
