"""The training loop, in the shape of torchvision's reference: ``Trainer.fit`` runs train_one_epoch, evaluate.

Every rank runs this. The loop is device-agnostic (CUDA on GPU nodes, CPU here), and all
the state a resumed job needs is in the ``last`` checkpoint: model, optimizer, scheduler,
scaler, the epoch and the optimizer step inside it, and every rank's RNG states.

Around it: ``loaders`` (a rank's train and val loaders), ``model_input`` (a batch made into the model's input),
``precision`` (autocast, the gradient scaler), ``evaluate``, ``rng`` (the random streams a checkpoint keeps) and
``reporting`` (progress, the train and epoch records, TensorBoard, log lines).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.signals import Signals
from clusterdeck.jobs.steps.train_spec import TrainSpec
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.train import checkpoint, determinism
from clusterdeck.jobs.train.data import Batch, extra_augment
from clusterdeck.jobs.train.device_decode import on_device
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.evaluate import evaluate, val_batches
from clusterdeck.jobs.train.loaders import train_loader, val_loader
from clusterdeck.jobs.train.model_input import batch_mixer, normalize
from clusterdeck.jobs.train.models import build_model, load_weights, read_weights, weights_digest
from clusterdeck.jobs.train.order import steps_per_epoch
from clusterdeck.jobs.train.precision import Precision
from clusterdeck.jobs.train.reporting import Progress, Report, Reporter
from clusterdeck.jobs.train.rng import rng_state, set_rng_state
from clusterdeck.jobs.train.schedule import build_optimizer, build_scheduler
from clusterdeck.jobs.train.shardset import Shard
from clusterdeck.jobs.train.sizing import size_loader


class StopRequested(Exception):
    """All ranks stopped at the same step after a signal, with ``last`` saved at that step."""

    def __init__(self, step: int, signal_name: str) -> None:
        super().__init__(f"stopped at step {step} after {signal_name}; checkpoint saved")
        self.step = step
        self.signal_name = signal_name


class TrainingDiverged(Exception):
    pass


@dataclass
class Job:
    """What the train step hands the loop."""

    cfg: TrainSpec
    classes: list[str]
    train_shards: list[Shard]
    val_shards: list[Shard]
    checkpoint_dir: Path
    metrics: MetricsWriter
    dist: Dist
    report: Report = lambda progress: None
    signals: Signals = field(default_factory=Signals)
    spec: dict[str, Any] = field(default_factory=dict)
    tensorboard_dir: Path | None = None
    """Where TensorBoard event files go, when the tensorboard package is installed."""
    pipeline: Pipeline | None = None
    """Counts the bytes and samples the loaders read, for the job's telemetry."""


class Trainer:
    def __init__(self, job: Job) -> None:
        self.job = job
        cfg, d = job.cfg, job.dist
        self.cfg, self.dist, self.device = cfg, d, d.device
        torch.manual_seed(cfg.seed + d.rank)
        self.model = build_model(cfg.model, len(job.classes), cfg.model_args)
        if cfg.weights is not None:
            load_weights(self.model, read_weights(cfg.weights), cfg.weights, "train.weights")
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ddp: torch.nn.Module = self.model
        if d.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.steps = steps_per_epoch(sum(s.samples for s in job.train_shards), d.world, cfg.batch_size, cfg.grad_accum)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps)
        self.precision = Precision(cfg.amp, self.device)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.mixer = batch_mixer(cfg, len(job.classes))
        self.progress = Progress()
        self.reports = Reporter(
            job.report,
            job.metrics,
            self.progress,
            epochs=cfg.epochs,
            steps=self.steps,
            main=d.main,
            tensorboard_dir=job.tensorboard_dir,
        )
        self.last_checkpoint = time.monotonic()
        size = size_loader(cfg.workers, cfg.decode, cuda=self.device.type == "cuda")
        self.cpus, self.decoder, self.workers = size.cpus, size.decoder, size.workers
        self._train_loader: DataLoader[Any] | None = None
        self._train_loader_epoch = -1
        """The epoch the persistent train loader's next iteration reads."""
        self._val_loader: DataLoader[Any] | None = None

    # --- checkpoints -------------------------------------------------------------------------------

    @property
    def last_path(self) -> Path:
        return self.job.checkpoint_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.job.checkpoint_dir / "best.pt"

    def save(self, *, best: bool = False, metrics: dict[str, float] | None = None) -> None:
        """Collective: every rank hands rank 0 its RNG state; rank 0 writes ``last`` (and ``best``)."""
        rngs = self.dist.gather(rng_state())
        if self.dist.main:
            p = self.progress
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.precision.scaler.state_dict(),
                "epoch": p.epoch,
                "step_in_epoch": p.step_in_epoch,
                "global_step": p.global_step,
                "best_top1": p.best_top1,
                "rng": rngs,
                "world": self.dist.world,
                "loader_workers": self.workers,
                "classes": self.job.classes,
                "spec": self.job.spec,
                "model_name": self.cfg.model,
                "model_args": self.cfg.model_args,
                "image_size": self.cfg.image_size,
                "metrics": metrics or {},
            }
            if best:  # best first: a crash between the two must not leave last ahead of a stale best
                checkpoint.save(self.best_path, state)
            checkpoint.save(self.last_path, state)
            self.job.metrics.write(
                "checkpoint", step=p.global_step, epoch=p.epoch, step_in_epoch=p.step_in_epoch, best=best
            )
        self.dist.barrier()
        self.last_checkpoint = time.monotonic()

    def restore(self) -> None:
        """Continues from ``last`` when there is one: the same epoch, the same step, the same random streams."""
        if not self.last_path.exists():
            return
        state = checkpoint.load(self.last_path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.scaler.load_state_dict(state["scaler"])
        p = self.progress
        p.epoch, p.step_in_epoch, p.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        p.best_top1 = state["best_top1"]
        p.resumed_from = p.global_step
        if state["world"] == self.dist.world:
            set_rng_state(state["rng"][self.dist.rank])
            workers = state.get("loader_workers", self.workers) if self.cfg.workers == "auto" else self.workers
            if workers != self.workers:  # the data order depends on it: replay the interrupted epoch as it was
                if self.dist.main:
                    print(f"train.workers: {workers} as when {self.last_path} was written (not {self.workers})")
                self.workers = workers
        else:  # another world size: the data order changes anyway; reseed deterministically
            torch.manual_seed(self.cfg.seed + 1000 * p.global_step + self.dist.rank)

    # --- the loop ----------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        p = self.progress
        self.restore()
        if p.resumed_from is not None and self.dist.main:
            print(f"resuming from {self.last_path}: epoch {p.epoch + 1}, step {p.global_step}", flush=True)
        if self.dist.main:
            print(
                f"train loader: decode {self.decoder}, {self.workers} worker(s) per task ({self.cpus} CPUs)", flush=True
            )
            if self.cfg.deterministic:  # torch's own flags, as this process trains with them
                print(f"deterministic kernels: {determinism.describe()}", flush=True)
        self.reports.report_progress()
        try:
            return self._fit()
        finally:
            self.close()

    def close(self) -> None:
        """Ends the persistent loader workers (``fit`` does, when it returns or fails)."""
        self._train_loader = self._val_loader = None

    def _fit(self) -> dict[str, Any]:
        cfg, p = self.cfg, self.progress
        result: dict[str, Any] = {}
        while p.epoch < cfg.epochs:
            started = time.monotonic()
            train_loss = self.train_one_epoch() if p.step_in_epoch < self.steps else None
            val = self.evaluate() if self.job.val_shards else {}
            record: dict[str, Any] = {"epoch": p.epoch + 1, "epoch_s": time.monotonic() - started, **val}
            if train_loss is not None:  # None: resumed after the epoch's last step, before its evaluation
                record["train_loss"] = train_loss
            improved = bool(val) and val["top1"] > p.best_top1
            if improved:
                p.best_top1 = val["top1"]
            p.epoch, p.step_in_epoch = p.epoch + 1, 0
            self.save(best=improved or not self.job.val_shards, metrics=record)
            self.reports.epoch_ended(record)  # after the save: a job killed in between redoes it, not a record
            self.reports.report_progress(record)
            result = record
            if p.epoch < cfg.epochs:
                self.control_point()  # a signal that came during validation is answered now, not an epoch later
        self.dist.sync_buffers(self.model)
        digests = self.dist.gather(weights_digest(self.model))
        if self.dist.main:
            self.job.metrics.write("final", step=p.global_step, weights_sha256=digests, **result)
        print(f"rank {self.dist.rank}: final weights sha256 {digests[self.dist.rank]}", flush=True)
        return result

    def batches(self) -> Iterator[Batch]:
        """This epoch's train batches; the loader and its workers persist, each iteration is the next epoch."""
        cfg, p = self.cfg, self.progress
        if self._train_loader is None or self._train_loader_epoch != p.epoch:
            self._train_loader = train_loader(
                cfg,
                self.job.train_shards,
                self.dist,
                epoch=p.epoch,
                step_in_epoch=p.step_in_epoch,
                steps=self.steps,
                workers=self.workers,
                decoder=self.decoder,
                pipeline=self.job.pipeline,
            )
        self._train_loader_epoch = p.epoch + 1
        batches = iter(self._train_loader)
        if self.decoder == "device":
            return on_device(batches, self.device, cfg.image_size, extra_augment(cfg.auto_augment))
        return batches

    def train_one_epoch(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None) -> float:
        """Trains to the end of the epoch; ``batches`` replaces the shard loader (bench/train_overhead.py)."""
        cfg, p = self.cfg, self.progress
        self.ddp.train()
        batches = batches if batches is not None else self.batches()
        window = _Window(time.monotonic(), loss=torch.zeros((), device=self.device))
        epoch_loss, epoch_batches = torch.zeros((), device=self.device), 0
        while p.step_in_epoch < self.steps:
            for micro in range(cfg.grad_accum):
                waited = time.monotonic()
                images, labels = next(batches)
                window.wait += time.monotonic() - waited
                loss = self.forward_backward(images, labels, last=micro == cfg.grad_accum - 1)
                epoch_loss += loss.detach()
                window.loss += loss.detach()
                window.batches += 1
                epoch_batches += 1
            self.optimizer_step()
            if p.step_in_epoch % cfg.log_every_steps == 0 or p.step_in_epoch == self.steps:
                self.log_step(window)
                window = _Window(time.monotonic(), loss=torch.zeros((), device=self.device))
                self.control_point()
        return float(epoch_loss.item()) / max(epoch_batches, 1)

    def forward_backward(self, images: torch.Tensor, labels: torch.Tensor, *, last: bool) -> torch.Tensor:
        x = normalize(images, self.device, self.cfg.channels_last)
        y = labels.to(self.device, non_blocking=True)
        if self.mixer is not None:
            x, y = self.mixer(x, y)
        sync = contextlib.nullcontext() if last or self.dist.world == 1 else self.ddp.no_sync()  # type: ignore[operator]
        with sync:
            with self.precision.autocast():
                loss = self.criterion(self.ddp(x), y)
            self.precision.scaler.scale(loss / self.cfg.grad_accum).backward()
        return loss

    def optimizer_step(self) -> None:
        scaler = self.precision.scaler
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.progress.step_in_epoch += 1
        self.progress.global_step += 1

    def log_step(self, window: _Window) -> None:
        p, d = self.progress, self.dist
        # The one host sync of a log interval; summed over ranks so that every rank takes the same branch.
        counted = torch.tensor(float(window.batches), dtype=torch.float64, device=self.device)
        total = self.dist.sum(torch.stack([window.loss.double(), counted]))
        loss = float(total[0]) / max(float(total[1]), 1.0)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss} at step {p.global_step}; lower train.lr, add warmup_epochs, or use amp 'bf16'"
            )
        elapsed = max(time.monotonic() - window.started, 1e-9)
        images = window.batches * self.cfg.batch_size * d.world
        lr = self.optimizer.param_groups[0]["lr"]
        optimizer_steps = window.batches / self.cfg.grad_accum
        self.reports.train_steps(
            loss=loss, lr=lr, images=images, elapsed=elapsed, wait=window.wait, optimizer_steps=optimizer_steps
        )

    def control_point(self) -> None:
        """Where all ranks agree on what signals and the clock ask for; the only place the loop stops early."""
        signals = self.job.signals
        due = time.monotonic() - self.last_checkpoint >= self.cfg.checkpoint_every_min * 60
        stop, save = self.dist.max([1.0 if signals.stop else 0.0, 1.0 if due or signals.checkpoint else 0.0])
        if save or stop:
            self.save()
            signals.checkpoint = False
        if stop:
            raise StopRequested(self.progress.global_step, signals.stop or "a signal on another rank")

    def evaluate(self) -> dict[str, float]:
        self.dist.sync_buffers(self.model)  # every rank evaluates the same model
        if self._val_loader is None:
            self._val_loader = val_loader(
                self.job.val_shards,
                self.dist,
                batch_size=self.cfg.batch_size,
                image_size=self.cfg.image_size,
                workers=self.workers,
                decoder=self.decoder,
                pipeline=self.job.pipeline,
                persistent=True,
            )
        batches = val_batches(self._val_loader, self.decoder, self.device, self.cfg.image_size)
        return evaluate(self.model, batches, self.dist, precision=self.precision, channels_last=self.cfg.channels_last)


@dataclass
class _Window:
    started: float
    wait: float = 0.0
    batches: int = 0
    loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
