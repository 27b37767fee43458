"""Series kept for charts: each point's time, epoch and value (``Trace``), and the run's progress in time
(``Timeline``), which places on the epoch axis what has a time only (telemetry, an evaluate step's result)."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

MAX_POINTS = 4096
"""Points a series keeps; past it every other one is dropped, so a long run keeps its start, more coarsely."""


def _halve(values: list[Any]) -> None:
    values[:] = values[::2]


class Timeline:
    """When the run was where: the (time, epoch) of its train and epoch records, and its first and last record's
    times, which every chart's x axis spans."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.epochs: list[float] = []
        self.origin, self.newest, self.last_epoch_seen = math.inf, 0.0, 0.0

    def saw(self, time: float) -> None:
        if time > 0:  # a record without its time reads 0: it moves no axis
            self.origin, self.newest = min(self.origin, time), max(self.newest, time)

    def add(self, time: float, epoch: float) -> None:
        if self.times and time < self.times[-1]:  # another rank's record, or a file read late: rare, kept in order
            at = bisect_right(self.times, time)
            self.times.insert(at, time)
            self.epochs.insert(at, epoch)
        else:
            self.times.append(time)
            self.epochs.append(epoch)
        self.last_epoch_seen = max(self.last_epoch_seen, epoch)
        if len(self.times) > MAX_POINTS:
            _halve(self.times)
            _halve(self.epochs)

    def epoch_at(self, time: float) -> float | None:
        """The epoch at ``time``, between the records either side; None outside training."""
        t = self.times
        if not t or not t[0] <= time <= t[-1]:
            return None
        k = bisect_right(t, time)
        if k == len(t):
            return self.epochs[-1]
        a, b = t[k - 1], t[k]
        ea, eb = self.epochs[k - 1], self.epochs[k]
        return ea + (eb - ea) * (time - a) / (b - a) if b > a else eb

    @property
    def last_epoch(self) -> float | None:
        return self.epochs[-1] if self.epochs else None


@dataclass
class Trace:
    """One series' history: each point's time, its epoch where its record says it (else None) and its value."""

    label: str
    times: list[float] = field(default_factory=list)
    epochs: list[float | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, time: float, epoch: float | None, value: float) -> None:
        self.times.append(time)
        self.epochs.append(epoch)
        self.values.append(value)
        if len(self.values) > MAX_POINTS:
            for column in (self.times, self.epochs, self.values):
                _halve(column)

    def points(self, axis: str, timeline: Timeline) -> list[tuple[float, float]]:
        if axis == "time":
            return [(t - timeline.origin, v) for t, v in zip(self.times, self.values, strict=True)]
        placed = [(e if e is not None else timeline.epoch_at(t), v)
                  for t, e, v in zip(self.times, self.epochs, self.values, strict=True)]  # fmt: skip
        return [(e, v) for e, v in placed if e is not None]
