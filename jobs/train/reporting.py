"""Where the training loop is, and what it tells the world about it: the step's progress (from every rank), and
from rank 0 the ``train`` and ``epoch`` records of metrics.jsonl, their TensorBoard scalars and their log lines."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterdeck.jobs.metrics import MetricsWriter

Report = Callable[[dict[str, float]], None]


@dataclass
class Progress:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_top1: float = -1.0
    resumed_from: int | None = None


class Reporter:
    """Reports ``progress`` (the loop's own, updated in place) for a run of ``epochs`` epochs of ``steps`` optimizer
    steps; writes records only where ``main``."""

    def __init__(
        self,
        report: Report,
        metrics: MetricsWriter,
        progress: Progress,
        *,
        epochs: int,
        steps: int,
        main: bool,
        tensorboard_dir: Path | None = None,
    ) -> None:
        self.report, self.metrics, self.progress = report, metrics, progress
        self.epochs, self.steps, self.main = epochs, steps, main
        self.last_epoch: dict[str, Any] = {}
        self.images_per_s: float | None = None
        self.tensorboard = _tensorboard(tensorboard_dir) if main else None

    def report_progress(self, record: dict[str, Any] | None = None) -> None:
        """Hands the step the loop's progress; ``record``: the epoch that just ended."""
        p = self.progress
        out = {
            "epoch": float(p.epoch),
            "epochs": float(self.epochs),
            "step": float(p.global_step),
            "steps_total": float(self.epochs * self.steps),
        }
        if p.resumed_from is not None:
            out["resumed_from_step"] = float(p.resumed_from)
        if record is not None:
            self.last_epoch = record
        for key in ("top1", "top5", "train_loss"):
            if key in self.last_epoch:
                out[key] = float(self.last_epoch[key])
        if p.best_top1 >= 0:
            out["best_top1"] = p.best_top1
        if self.images_per_s is not None:
            out["images_per_s"] = self.images_per_s
        self.report(out)

    def train_steps(
        self, *, loss: float, lr: float, images: int, elapsed: float, wait: float, optimizer_steps: float
    ) -> None:
        """A log interval: ``images`` over all ranks in ``elapsed`` seconds, ``wait`` of them waiting for data."""
        if not self.main:
            return
        p = self.progress
        self.metrics.write(
            "train",
            step=p.global_step,
            epoch=p.epoch + p.step_in_epoch / self.steps,
            loss=loss,
            lr=lr,
            images_per_s=images / elapsed,
            step_s=elapsed / max(optimizer_steps, 1),
            data_wait_s=wait,
            data_wait_fraction=wait / elapsed,
        )
        self._scalars("train", {"loss": loss, "lr": lr, "images_per_s": images / elapsed})
        print(
            f"step {p.global_step} (epoch {p.epoch + 1}, {p.step_in_epoch}/{self.steps}): loss {loss:.4f} "
            f"{images / elapsed:.1f} img/s, data wait {wait / elapsed:.0%}",
            flush=True,
        )
        self.images_per_s = images / elapsed
        self.report_progress()

    def epoch_ended(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        self.metrics.write("epoch", step=self.progress.global_step, **record)
        self._scalars("epoch", record)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
        print(f"epoch {self.progress.epoch}/{self.epochs}: {shown}", flush=True)

    def _scalars(self, group: str, values: dict[str, Any]) -> None:
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(f"{group}/{key}", value, self.progress.global_step)
            self.tensorboard.flush()


def _tensorboard(directory: Path | None) -> Any:
    """A SummaryWriter when ``tensorboard`` is installed (it is optional); metrics.jsonl is written either way."""
    if directory is None or importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(directory))
