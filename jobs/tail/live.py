"""What a live view of a run shows, folded from its records in order: the latest of each kind and source.

``clusterdeck watch`` renders it; the app's panels read the same fields. Progress and the
state come from the run's status (``jobs.status``), the figures from the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

K = TypeVar("K")
STALE_S = 30.0
"""A task whose last sample is this much older than the newest is gone (ended, or requeued elsewhere)."""


@dataclass
class LiveRun:
    records: int = 0
    train: dict[str, Any] = field(default_factory=dict)
    """The last ``train`` record: step, epoch, loss, lr, images_per_s, step_s, data_wait_fraction."""
    epoch: dict[str, Any] = field(default_factory=dict)
    """The last ``epoch`` record (top1, top5, val_loss, train_loss), or ``evaluate`` record."""
    system: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    """The last ``system`` record of each (node, rank)."""
    gpus: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    """The last ``gpu`` record of each (node, rank, gpu)."""
    stage: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The last ``stage`` record of each node."""
    newest: float = 0.0
    """Time of the newest ``system`` record."""

    def current(self, rows: dict[K, dict[str, Any]]) -> list[tuple[K, dict[str, Any]]]:
        """``system`` or ``gpu`` rows of the tasks still sampling, in key order."""
        return sorted((k, r) for k, r in rows.items() if float(r.get("time", 0.0)) >= self.newest - STALE_S)

    def add(self, record: dict[str, Any]) -> None:
        self.records += 1
        kind = record.get("kind")
        node, rank = str(record.get("node", "")), int(record.get("rank", 0))
        if kind == "train":
            self.train = record
        elif kind in ("epoch", "evaluate"):
            self.epoch = record
        elif kind == "system":
            self.system[(node, rank)] = record
            self.newest = max(self.newest, float(record.get("time", 0.0)))
        elif kind == "gpu" and type(record.get("gpu", 0)) is int:  # another writer's gpu line is not folded
            self.gpus[(node, rank, record.get("gpu", 0))] = record
        elif kind == "stage":
            self.stage[node] = record

    def eta_s(self, step: float, steps_total: float) -> float | None:
        """Seconds to the last step at the last interval's pace (evaluation not counted)."""
        step_s = self.train.get("step_s")
        if not step_s or steps_total <= 0 or step >= steps_total:
            return None
        return float(step_s) * (steps_total - step)
