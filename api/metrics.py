"""``clusterdeck.log`` and ``clusterdeck.log_epoch``: a user's figures as the run's own ``train`` and ``epoch`` records.

They go to the run's ``metrics.jsonl`` (``jobs.metrics.MetricsWriter``, the built-in trainer's writer), with the
field names the trainer writes and every reader parses (``jobs.tail.records``): so ``clusterdeck watch``, the
app's curves, ``clusterdeck diff`` and ``clusterdeck metrics`` show a script's run as they show a built-in one.
Other figures go into the same record as extra fields (``metrics --json`` and the app's curves show them).

Only rank 0 writes, as in the built-in trainer: one record per step for the run, not one per rank. Outside a job
(no ``CLUSTERDECK_METRICS``) nothing is written, so the same script runs by hand unchanged.
"""

from __future__ import annotations

import math
import numbers
from typing import Final

from clusterdeck.jobs import taskenv
from clusterdeck.jobs.metrics import MetricsWriter

Number = int | float

KINDS: Final = ("train", "epoch")
"""The kinds a script writes: a log interval's figures, and an epoch's."""

REQUIRED: Final = {"train": ("step", "epoch", "loss"), "epoch": ("epoch",)}
"""The fields without which a reader does not take a record for its kind (``jobs.tail.records``)."""

INTEGERS: Final = {"train": ("step",), "epoch": ("epoch", "step")}
"""Fields the readers take as whole numbers only; the rest are floats."""


def log(kind: str = "train", **values: Number) -> None:
    """Appends one ``kind`` record (rank 0 only; nothing outside a job).

    ``kind="train"`` (every few steps): ``step`` (the optimizer step, an int), ``epoch`` (fractional and 0-based:
    2.5 is half-way through the third epoch) and ``loss`` are required; ``lr``, ``images_per_s``, ``step_s``,
    ``data_wait_s`` and ``data_wait_fraction`` are shown where the built-in trainer's are. ``kind="epoch"``: see
    ``log_epoch``. Any other number is kept as an extra field of the record.

    Raises ValueError for an unknown kind or a missing field, TypeError for a value that is not a number (a
    tensor: pass ``loss.item()``).
    """
    record = _checked(kind, values)
    env = taskenv.read_task_env()
    if env.metrics is None or env.rank != 0:
        return
    MetricsWriter(env.metrics, rank=env.rank, attempt=env.attempt).write(kind, **record)


def log_epoch(epoch: int, **values: Number) -> None:
    """Appends the ``epoch`` record of epoch ``epoch`` (1 is the first) once it is done: ``train_loss`` (the
    epoch's mean), ``top1`` and ``top5`` (fractions, 0 … 1), ``val_loss``, ``epoch_s``, ``step`` and any other
    numbers. The curves of ``clusterdeck diff`` and the app are drawn per epoch from these records."""
    log("epoch", epoch=epoch, **values)


RESERVED = ("time", "kind", "node", "rank", "attempt")
"""Every record's own fields, which the writer sets (a value given for one would hide the record from readers)."""


def _checked(kind: str, values: dict[str, Number]) -> dict[str, Number]:
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(map(repr, KINDS))}")
    taken = [name for name in values if name in RESERVED]
    if taken:
        raise ValueError(f"{taken[0]}: set by clusterdeck for every record; name your figure otherwise")
    missing = [name for name in REQUIRED[kind] if name not in values]
    if missing:
        raise ValueError(f"{', '.join(missing)}: a {kind!r} record needs {', '.join(REQUIRED[kind])}")
    record: dict[str, Number] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            hint = " (a tensor? pass .item())" if hasattr(value, "item") else ""
            raise TypeError(f"{name}: {value!r} is a {type(value).__name__}, not a number{hint}")
        if name in INTEGERS[kind]:
            if not isinstance(value, numbers.Integral) and not float(value).is_integer():
                raise ValueError(f"{name}: {value!r} must be a whole number in a {kind!r} record")
            record[name] = int(value)
        else:
            record[name] = float(value)
    if kind == "epoch" and record["epoch"] < 1:
        raise ValueError(f"epoch: {record['epoch']} — epochs count from 1 in an 'epoch' record")
    if kind == "train" and not math.isfinite(record["epoch"]):
        raise ValueError(f"epoch: {record['epoch']} is not a finite number")
    return record
