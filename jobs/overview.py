"""One line per run, as the runs list shows it: state, progress, size, speed and best accuracy.

Everything comes from the run records and the jobs' status files (``jobs.status``, one
scheduler query for all runs) and the specs (read once per run: a spec never changes).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clusterdeck.jobs.damage import DamagedRecord
from clusterdeck.jobs.dispatch.base import QueueWait
from clusterdeck.jobs.records import load_statuses, read_spec_json
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runs import list_runs
from clusterdeck.jobs.status import RunView, damaged_view, queue_wait, view_runs
from clusterdeck.jobs.steps.registry import steps
from clusterdeck.jobs.tail.records import Progress


@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    state: str
    steps: str
    """``shard:COMPLETED train:RUNNING``."""
    progress: float | None
    """0..1 of the step now running (train steps, shard files), None when nothing tells."""
    created_at: float
    ended_at: float | None
    nodes: int
    gpus: int
    images_per_s: float | None
    best_top1: float | None
    path: str
    queue: QueueWait | None = None
    """While the run waits in the scheduler's queue: why, and when it may start (``RunView.queue``)."""

    @property
    def elapsed_s(self) -> float:
        return (self.ended_at or time.time()) - self.created_at

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> RunRow:
        """The row of one ``Overview.listing`` entry (a remote ``clusterdeck ls --json``)."""
        return cls(
            run_id=entry["run_id"],
            name=entry["name"],
            state=entry["state"],
            steps=entry.get("damaged") or " ".join(f"{step}:{state}" for step, state in entry["steps"].items()),
            progress=entry.get("progress"),
            created_at=entry["created_at"],
            ended_at=entry.get("ended_at"),
            nodes=entry.get("nodes", 0),
            gpus=entry.get("gpus", 0),
            images_per_s=entry.get("images_per_s"),
            best_top1=entry.get("best_top1"),
            path=entry["path"],
            queue=queue_wait(entry.get("queue")),
        )


class Overview:
    """Rows of every run under a runs root; keeps each run's spec once read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sizes: dict[str, tuple[int, int]] = {}
        self._final: dict[str, tuple[float | None, float | None, float | None]] = {}

    def listing(self) -> list[dict[str, Any]]:
        """``clusterdeck ls --json``'s runs: each run's summary and its row's figures, read by ``RunRow.from_entry``
        (which ignores fields it does not know: a newer login node's).

        A run whose record, spec or a status file is damaged is listed with state ``DAMAGED`` and a
        ``damaged`` reason that names the file; nothing of it is rewritten.
        """
        entries = []
        for view in view_runs(list_runs(self.root)):
            try:
                row = self.row(view)
            except DamagedRecord as exc:  # its spec, or a status file of a finished run, read here
                view = damaged_view(RunPaths(Path(view.path)), exc)
                row = self.row(view)
            entry = {
                "run_id": view.run_id,
                "name": view.name,
                "state": view.state,
                "executor": view.executor,
                "created_at": view.created_at,
                "ended_at": view.ended_at,
                "path": view.path,
                "steps": {s.name: s.state for s in view.steps},
                "progress": row.progress,
                "nodes": row.nodes,
                "gpus": row.gpus,
                "images_per_s": row.images_per_s,
                "best_top1": row.best_top1,
                "queue": asdict(row.queue) if row.queue else None,
            }
            if view.damaged:
                entry["damaged"] = view.damaged
            entries.append(entry)
        return entries

    def row(self, view: RunView) -> RunRow:
        if view.damaged:
            # the reason stands where the steps would: the runs list shows it without a column of its own
            return RunRow(
                view.run_id, "", "DAMAGED", view.damaged, None, view.created_at, None, 0, 0, None, None, view.path
            )
        nodes, gpus = self._size(view)
        progress, images_per_s, best = self._figures(view)
        return RunRow(
            run_id=view.run_id,
            name=view.name,
            state=view.state,
            steps=" ".join(f"{s.name}:{s.state}" for s in view.steps),
            progress=progress,
            created_at=view.created_at,
            ended_at=view.ended_at,
            nodes=nodes,
            gpus=gpus,
            images_per_s=images_per_s,
            best_top1=best,
            path=view.path,
            queue=view.queue,
        )

    def _figures(self, view: RunView) -> tuple[float | None, float | None, float | None]:
        """(progress, images/s, best top-1) from the parts' last reports; a finished run's are read once."""
        if view.ended and view.run_id in self._final:  # a resumed run is live again: read afresh
            return self._final[view.run_id]
        progresses = [(s.name, s.state, p.progress) for s in view.steps for p in s.parts]
        if view.ended and not progresses:  # the record's cached final state has no parts: their status files
            last = {}
            for (step, _, _), status in sorted(load_statuses(RunPaths(Path(view.path))).items()):
                last[step] = (step, status.state, status.progress)
            progresses = list(last.values())
        progress: float | None = None
        images_per_s = best = None
        for _, state, report in progresses:
            p = Progress.of(report)
            if p.steps_total:
                progress = (p.step or 0.0) / p.steps_total
                images_per_s = p.images_per_s if p.images_per_s is not None else images_per_s
                best = p.best_top1 if p.best_top1 is not None else best
            elif p.shards_total and state == "RUNNING":
                progress = (p.shards_done or 0.0) / p.shards_total
        if view.state == "COMPLETED":
            progress = 1.0
        figures = (progress, images_per_s, best)
        if view.ended:
            self._final[view.run_id] = figures
        return figures

    def _size(self, view: RunView) -> tuple[int, int]:
        """(nodes, GPUs) of the biggest step, as the spec asks for them; ``DamagedRecord`` for a damaged spec."""
        if view.run_id not in self._sizes:
            spec = read_spec_json(RunPaths(Path(view.path)))
            size = (1, 0)
            if (spec.get("cluster") or {}).get("executor") == "slurm":
                for step in steps():
                    r = (spec.get(step.name) or {}).get("resources") or {}
                    nodes, gpus = r.get("nodes", 1), r.get("gpus_per_node", 0)
                    if type(nodes) is int and type(gpus) is int:  # another version's values are not counted
                        size = max(size, (nodes, nodes * gpus), key=lambda s: (s[1], s[0]))
            self._sizes[view.run_id] = size
        return self._sizes[view.run_id]
