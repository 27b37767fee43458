"""The records a run's jobs write, as typed classes, and the one parser every reader uses.

``metrics.jsonl`` and the telemetry files hold one JSON object per line (``jobs.metrics``):
``time``, ``kind``, ``node``, ``rank``, ``attempt``, then the kind's values. ``parse`` turns one
into its kind's class: ``Train``, ``Epoch``, ``Evaluate``, ``Checkpoint``, ``Final``, ``Stage``
(the metrics file), ``System`` and ``Gpu`` (telemetry). A record without the fields that say
what it is about (a train record's epoch and loss, a gpu record's device) is not one of its
kind; a figure it lacks reads as 0, or as None where a writer leaves it out when it cannot
measure it (NVML's, the node-wide ones of a rank other than local rank 0, val figures without
a val set). A field a reader does not know (a newer writer added it) is ignored, but for ``train`` and ``epoch``
records: a user's script adds its own figures to those (``clusterdeck.log``), kept as ``extra_figures``, drawn as
further curves.

A kind is ``name`` or ``name/major``: major 1 is written bare, and a change a reader of this
major could misread gets a new major. A record of a kind this module does not know, or of
another major of one it knows, is skipped (``parse`` gives None), never a crash.

The progress a running part reports in its status file (``jobs.records.PartStatus.progress``)
is read through ``Progress``: each step reports the figures it has, the rest are None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError


class MetricRecord(BaseModel):
    """What every record has; a line without these, of these types, is not a record."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    KIND: ClassVar[str] = ""
    MAJOR: ClassVar[int] = 1

    time: float = 0.0
    kind: str = ""
    node: str = ""
    rank: int = 0
    attempt: int = 1


class WithExtraFigures(MetricRecord):
    """A kind a user's script writes too, with figures of its own beside the kind's."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    def extra_figures(self) -> dict[str, float]:
        """The numbers beyond the kind's fields (anything else, a string or a list, is no curve)."""
        extra = self.model_extra or {}
        return {k: float(v) for k, v in extra.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class Train(WithExtraFigures):
    """Every ``train.log_every_steps``: the last interval's figures (rank 0 gathers every rank's)."""

    KIND = "train"
    epoch: float
    """Fractional, 0-based: 2.5 is half-way through the third epoch."""
    loss: float
    step: int = 0
    lr: float = 0.0
    images_per_s: float = 0.0
    data_wait_fraction: float = 0.0
    step_s: float | None = None
    data_wait_s: float | None = None


class Validation(MetricRecord):
    """Figures on the val set, when the run has one."""

    top1: float | None = None
    top5: float | None = None
    val_loss: float | None = None
    val_samples: float | None = None


class Epoch(Validation, WithExtraFigures):
    """At the end of each epoch, after its checkpoint."""

    KIND = "epoch"
    epoch: int
    """1 is the first."""
    step: int | None = None
    epoch_s: float | None = None
    train_loss: float | None = None
    """None when a resumed run had no train steps left in the epoch."""


class Evaluate(Validation):
    """The ``evaluate`` step's result."""

    KIND = "evaluate"
    checkpoint: str = ""


class Checkpoint(MetricRecord):
    KIND = "checkpoint"
    step: int
    epoch: int
    step_in_epoch: int
    best: bool = False


class Final(Validation):
    """The end of training: the last epoch's figures (none after no epoch) and every rank's weights digest."""

    KIND = "final"
    step: int
    weights_sha256: list[str] = []
    epoch: int | None = None
    epoch_s: float | None = None
    train_loss: float | None = None


class Stage(MetricRecord):
    """A node's staging progress (``jobs.stage.stager.Tally``)."""

    KIND = "stage"
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    copied: int = 0
    reused: int = 0
    repaired: int = 0
    seconds: float = 0.0
    mb_s: float = 0.0
    eta_s: float | None = None
    done: bool = False


class System(MetricRecord):
    """A rank's process figures over ``interval_s`` (``jobs.telemetry.sampler``); node-wide ones from local rank 0."""

    KIND = "system"
    interval_s: float = 0.0
    cpu_pct: float = 0.0
    rss_mb: float = 0.0
    read_mb_s: float = 0.0
    write_mb_s: float = 0.0
    data_mb_s: float = 0.0
    data_samples_s: float = 0.0
    node_cpu_pct: float | None = None
    node_mem_used_mb: float | None = None
    disk_read_mb_s: float | None = None
    disk_write_mb_s: float | None = None
    net_rx_mb_s: float | None = None
    net_tx_mb_s: float | None = None

    @property
    def node_wide(self) -> bool:
        return any(v is not None for v in (self.disk_read_mb_s, self.disk_write_mb_s, self.net_rx_mb_s))


class Gpu(MetricRecord):
    """A CUDA rank's device (``jobs.telemetry.gpu``): torch's allocator always, NVML's figures where it answers."""

    KIND = "gpu"
    gpu: int
    allocated_mb: float = 0.0
    reserved_mb: float = 0.0
    peak_mb: float = 0.0
    used_mb: float | None = None
    total_mb: float | None = None
    util_pct: float | None = None


KINDS: dict[str, type[MetricRecord]] = {
    cls.KIND: cls for cls in (Train, Epoch, Evaluate, Checkpoint, Final, Stage, System, Gpu)
}
"""Every kind this clusterdeck reads, by name."""


def envelope(value: Any) -> MetricRecord | None:
    """``value`` as a record of any kind (its common fields only); None when it is not one."""
    if not isinstance(value, dict):
        return None
    try:
        return MetricRecord.model_validate(value)
    except ValidationError:
        return None


def parse(value: Any) -> MetricRecord | None:
    """``value`` as its kind's record; None for an unknown kind, another major, or a record not of its kind."""
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        return None
    name, _, major = value["kind"].partition("/")
    cls = KINDS.get(name)
    if cls is None or (major and major != str(cls.MAJOR)):
        return None
    try:
        return cls.model_validate(value)
    except ValidationError:
        return None


class Progress(BaseModel):
    """What a part's status file says of its progress; each step reports its own figures, the rest are None."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # train
    step: float | None = None
    steps_total: float | None = None
    epoch: float | None = None
    epochs: float | None = None
    images_per_s: float | None = None
    best_top1: float | None = None
    train_loss: float | None = None
    resumed_from_step: float | None = None
    # train and evaluate
    top1: float | None = None
    top5: float | None = None
    # evaluate
    val_loss: float | None = None
    val_samples: float | None = None
    # shard
    shards_done: float | None = None
    shards_total: float | None = None
    mb_per_s: float | None = None

    @classmethod
    def of(cls, report: Mapping[str, Any]) -> Progress:
        """The figures of ``report`` (a status's ``progress``); one of a wrong type is left out, not a crash."""
        try:
            return cls.model_validate(report)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            return cls.model_validate({k: v for k, v in report.items() if k not in bad})
