"""Runs side by side: how their specs differ, and their per-epoch curves.

``clusterdeck diff`` prints a ``Comparison``; the app's compare screen draws one. Specs come
from each run's ``spec.json``, curves from its ``metrics.jsonl`` (read with ``jobs.tail``),
names and states from ``jobs.status`` (one scheduler query for all the runs).

Per epoch, the newest record wins: a resumed or requeued run that redid an epoch shows what
its latest attempt measured. Train loss is the ``epoch`` record's ``train_loss``, the job's
own mean over every batch of the epoch; where that is missing (an epoch still running, or
one resumed after its last step) it is the mean ``loss`` of the epoch's ``train`` records.
Values that are not finite numbers (a NaN loss) are left out: the log shows them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.tail.access import FileAccess, LocalFiles, read_all
from clusterdeck.jobs.tail.filetail import FileTail
from clusterdeck.jobs.tail.records import Epoch, MetricRecord, Train, parse

SERIES: Final = ("train_loss", "top1", "top5", "val_loss")
"""The curves of a run, in the order shown; an ``epoch`` record's keys, but for train loss (see above)."""

Point = tuple[int, float]
Curves = dict[str, list[Point]]


class _Absent:
    """The value, in one spec, of a key that only other specs have."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Final = _Absent()


def flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys (``train.stage.mode``); lists and empty tables are values."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def spec_differences(specs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(dotted key, one value per spec) for each key whose values differ, sorted by key.

    A key missing from a spec has ``ABSENT`` there (``None`` is a value: ``weights = null``).
    Values differ by their JSON form, so ``1`` and ``1.0``, or ``1`` and ``true``, differ.
    """
    flats = [flatten(spec) for spec in specs]
    keys = sorted({key for flat in flats for key in flat})
    out = []
    for key in keys:
        values = [flat.get(key, ABSENT) for flat in flats]
        if len({_canonical(v) for v in values}) > 1:
            out.append((key, values))
    return out


def _canonical(value: Any) -> str:
    return "\0absent" if value is ABSENT else json.dumps(value, sort_keys=True, default=str)


def format_value(value: Any) -> str:
    """A spec value as a cell: strings bare, ``—`` for absent, everything else as JSON (``null``, ``true``, ``[]``)."""
    if value is ABSENT:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def metrics_records(paths: RunPaths, access: FileAccess | None = None) -> Iterator[MetricRecord]:
    """The records of ``metrics.jsonl`` in order, typed (none before it exists); a half-written last line, or a
    record of a kind or major this clusterdeck does not read, is skipped."""
    tail = FileTail(access or LocalFiles(), str(paths.metrics))
    try:
        while True:
            lines = tail.poll(final=True)
            if tail.error:
                raise UserError(f"run {paths.run_id}: cannot read its metrics: {tail.error}")
            for line in lines:
                try:
                    record = parse(json.loads(line))
                except ValueError:
                    continue
                if record is not None:
                    yield record
            if not tail.more:
                return
    finally:
        tail.close()


def epoch_curves(paths: RunPaths, access: FileAccess | None = None) -> Curves:
    """``SERIES`` name → [(epoch, value)] sorted by epoch (1 is the first), for the series the run has; then the
    extra figures of its ``epoch`` records (a script's own), by name."""
    epochs: dict[int, tuple[int, Epoch]] = {}  # epoch → (attempt, its newest epoch record)
    losses: dict[int, tuple[int, list[float]]] = {}  # epoch → (attempt, losses of its train records)
    for r in metrics_records(paths, access):
        if isinstance(r, Epoch):
            if r.epoch not in epochs or r.attempt >= epochs[r.epoch][0]:
                epochs[r.epoch] = (r.attempt, r)
        elif isinstance(r, Train):
            # a train record's epoch is fractional, 0-based: epoch 1 runs over (0, 1]
            epoch = max(math.ceil(r.epoch), 1) if math.isfinite(r.epoch) else 0
            if not epoch or not math.isfinite(r.loss):
                continue  # a NaN step shows in the log; the curve keeps its scale
            seen, values = losses.get(epoch, (0, []))
            if r.attempt > seen:
                values = []
            if r.attempt >= seen:
                losses[epoch] = (r.attempt, [*values, r.loss])
    curves: Curves = {}
    for epoch in sorted(epochs.keys() | losses.keys()):
        record = epochs[epoch][1] if epoch in epochs else None
        values = {key: getattr(record, key) for key in SERIES} if record else {}
        extra = record.extra_figures() if record else {}  # a script's own figures (clusterdeck.log_epoch)
        values.update({key: v for key, v in extra.items() if key not in values})
        found = {key: float(v) for key, v in values.items() if v is not None and math.isfinite(v)}
        if "train_loss" not in found and losses.get(epoch):
            found["train_loss"] = sum(losses[epoch][1]) / len(losses[epoch][1])
        for key in [*SERIES, *sorted(found.keys() - set(SERIES))]:
            if key in found:
                curves.setdefault(key, []).append((epoch, found[key]))
    return curves


def best(points: Sequence[Point]) -> Point | None:
    """(epoch, value) of the highest value, the earliest epoch on a tie; None for no points."""
    return max(points, key=lambda p: (p[1], -p[0]), default=None)


def letter(i: int) -> str:
    """The column of the ``i``-th run: A, B, … Z, A2, B2, …"""
    return chr(ord("A") + i % 26) + (str(i // 26 + 1) if i >= 26 else "")


@dataclass(frozen=True)
class Comparison:
    """Two or more runs, in the order given; every list has one entry per run."""

    run_ids: list[str]
    names: list[str]
    states: list[str]
    paths: list[str]
    differences: list[tuple[str, list[Any]]]
    """(dotted spec key, one value per run, ``ABSENT`` where a run's spec has no such key)."""
    curves: list[Curves]

    @property
    def epochs(self) -> list[int]:
        """Every epoch some run has a point for, sorted."""
        return sorted({e for curves in self.curves for points in curves.values() for e, _ in points})

    def value(self, run: int, series: str, epoch: int) -> float | None:
        """The ``run``-th run's ``series`` at ``epoch``; None where it has no point."""
        return dict(self.curves[run].get(series, [])).get(epoch)

    def best_top1(self, run: int) -> Point | None:
        return best(self.curves[run].get("top1", []))

    def to_json(self) -> dict[str, Any]:
        """Runs (with their column letter and best top-1), differences keyed by run id (absent: left out), curves."""
        runs = []
        for i, run_id in enumerate(self.run_ids):
            top = self.best_top1(i)
            runs.append(
                {
                    "column": letter(i),
                    "run_id": run_id,
                    "name": self.names[i],
                    "state": self.states[i],
                    "path": self.paths[i],
                    "best_top1": top[1] if top else None,
                    "best_epoch": top[0] if top else None,
                }
            )
        differences = {
            key: {rid: v for rid, v in zip(self.run_ids, values, strict=True) if v is not ABSENT}
            for key, values in self.differences
        }
        curves = {
            rid: {key: [[e, v] for e, v in points] for key, points in c.items()}
            for rid, c in zip(self.run_ids, self.curves, strict=True)
        }
        return {"runs": runs, "differences": differences, "curves": curves}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        """The comparison ``to_json`` wrote (a remote ``clusterdeck diff --json``)."""
        run_ids = [r["run_id"] for r in data["runs"]]
        return cls(
            run_ids=run_ids,
            names=[r["name"] for r in data["runs"]],
            states=[r["state"] for r in data["runs"]],
            paths=[r["path"] for r in data["runs"]],
            differences=[
                (key, [values.get(rid, ABSENT) for rid in run_ids]) for key, values in data["differences"].items()
            ],
            curves=[
                {key: [(int(e), float(v)) for e, v in points] for key, points in data["curves"][rid].items()}
                for rid in run_ids
            ],
        )


def read_spec(paths: RunPaths, access: FileAccess | None = None) -> dict[str, Any]:
    """The run's ``spec.json``; a UserError naming the run when it is missing or unreadable."""
    try:
        spec = json.loads(read_all(access or LocalFiles(), str(paths.spec)))
    except FileNotFoundError:
        raise UserError(f"run {paths.run_id}: it has no spec ({paths.spec} is missing)") from None
    except OSError as exc:
        raise UserError(f"run {paths.run_id}: cannot read its spec {paths.spec} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UserError(f"run {paths.run_id}: its spec {paths.spec} is not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise UserError(f"run {paths.run_id}: its spec {paths.spec} is not a JSON object")
    return spec


def compare_runs(paths: Sequence[RunPaths]) -> Comparison:
    """The comparison of the runs given (a run given twice counts once); a UserError for fewer than two."""
    from clusterdeck.jobs.status import view_runs  # the scheduler backends load only when runs are compared

    runs = list(dict.fromkeys(RunPaths(p.root.resolve()) for p in paths))
    if len(runs) < 2:
        given = ", ".join(p.run_id for p in runs) or "none"
        raise UserError(f"compare needs two or more different runs (given: {given})")
    specs = [read_spec(p) for p in runs]
    views = {v.path: v for v in view_runs(runs)}
    missing = [p.run_id for p in runs if str(p.root) not in views]
    if missing:
        raise UserError(*(f"run {run_id}: its record run.json is missing or unreadable" for run_id in missing))
    shown = [views[str(p.root)] for p in runs]
    return Comparison(
        run_ids=[v.run_id for v in shown],
        names=[v.name for v in shown],
        states=[v.state for v in shown],
        paths=[v.path for v in shown],
        differences=spec_differences(specs),
        curves=[epoch_curves(p) for p in runs],
    )
