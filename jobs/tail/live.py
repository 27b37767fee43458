"""What a live view of a run shows, folded from its records in order: the latest of each kind and source.

``clusterdeck watch`` renders it; the app's panels read the same fields. Progress and the
state come from the run's status (``jobs.status``), the figures from the records, each parsed
once here into its typed class (``jobs.tail.records``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from clusterdeck.jobs.tail.records import Epoch, Evaluate, Gpu, MetricRecord, Stage, System, Train, parse

R = TypeVar("R", System, Gpu)
STALE_S = 30.0
"""A task whose last sample is this much older than the newest is gone (ended, or requeued elsewhere)."""


@dataclass
class LiveRun:
    records: int = 0
    skipped: int = 0
    """Records not folded: of a kind or major this clusterdeck does not know, or without their kind's fields."""
    train: Train | None = None
    """The last ``train`` record."""
    epoch: Epoch | Evaluate | None = None
    """The last ``epoch`` or ``evaluate`` record."""
    system: dict[tuple[str, int], System] = field(default_factory=dict)
    """The last ``system`` record of each (node, rank)."""
    gpus: dict[tuple[str, int, int], Gpu] = field(default_factory=dict)
    """The last ``gpu`` record of each (node, rank, gpu)."""
    stage: dict[str, Stage] = field(default_factory=dict)
    """The last ``stage`` record of each node."""
    newest: float = 0.0
    """Time of the newest ``system`` record."""

    def current(self, rows: dict[Any, R]) -> list[tuple[Any, R]]:
        """``system`` or ``gpu`` rows of the tasks still sampling, in key order."""
        return sorted(((k, r) for k, r in rows.items() if r.time >= self.newest - STALE_S), key=lambda row: row[0])

    def add(self, raw: dict[str, Any]) -> MetricRecord | None:
        """Folds one record as a job wrote it; returns it typed, or None when it is skipped."""
        self.records += 1
        record = parse(raw)
        if isinstance(record, Train):
            self.train = record
        elif isinstance(record, Epoch | Evaluate):
            self.epoch = record
        elif isinstance(record, System):
            self.system[(record.node, record.rank)] = record
            self.newest = max(self.newest, record.time)
        elif isinstance(record, Gpu):
            self.gpus[(record.node, record.rank, record.gpu)] = record
        elif isinstance(record, Stage):
            self.stage[record.node] = record
        elif record is None:
            self.skipped += 1
        return record

    def eta_s(self, step: float, steps_total: float) -> float | None:
        """Seconds to the last step at the last interval's pace (evaluation not counted)."""
        step_s = self.train.step_s if self.train else None
        if not step_s or steps_total <= 0 or step >= steps_total:
            return None
        return step_s * (steps_total - step)
