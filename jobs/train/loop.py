"""The training loop, in the shape of torchvision's reference: ``Trainer.fit`` runs train_one_epoch, evaluate.

Every rank runs this. The loop is device-agnostic (CUDA on GPU nodes, CPU here), and all
the state a resumed job needs is in the ``last`` checkpoint: model, optimizer, scheduler,
scaler, the epoch and the optimizer step inside it, and every rank's RNG states.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from jobs.metrics import MetricsWriter
from jobs.signals import Signals
from jobs.steps.train_spec import TrainSpec
from jobs.telemetry.pipeline import Pipeline
from jobs.train import checkpoint, determinism
from jobs.train.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    Batch,
    TrainStream,
    ValStream,
    extra_augment,
    sample_seed,
)
from jobs.train.device_decode import on_device
from jobs.train.distributed import Dist
from jobs.train.loaders import make_loader
from jobs.train.models import build_model, load_weights, read_weights
from jobs.train.order import share_nodes, steps_per_epoch, train_shares, val_shares
from jobs.train.schedule import build_optimizer, build_scheduler
from jobs.train.shardset import Shard
from jobs.train.sizing import Decoder, size_loader

Report = Callable[[dict[str, float]], None]


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


@dataclass
class Progress:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_top1: float = -1.0
    resumed_from: int | None = None


class Precision:
    """Autocast and the gradient scaler for one device and ``amp`` setting."""

    def __init__(self, amp: str, device: torch.device) -> None:
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


@functools.cache
def imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's mean and std as (1, 3, 1, 1) tensors on ``device``, made once per device: a new one each batch is a
    blocking host-to-device copy in every step. Read-only: ``normalize`` never writes to them."""
    with torch.inference_mode(False):  # first asked for by evaluate or by training: usable by both
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def normalize(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NCHW from the loader (channels-last in memory) → normalised float on the device (the division happens
    there, not in workers)."""
    x = images.to(device, non_blocking=True).float().div_(255)
    mean, std = imagenet_stats(device)
    x = x.sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def batch_mixer(cfg: TrainSpec, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], Any] | None:
    mixers: list[Any] = []
    if cfg.mixup_alpha > 0:
        mixers.append(v2.MixUp(alpha=cfg.mixup_alpha, num_classes=num_classes))
    if cfg.cutmix_alpha > 0:
        mixers.append(v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


def rng_state() -> dict[str, Any]:
    numpy_state: Any = np.random.get_state()
    name, keys, pos, has_gauss, cached = numpy_state
    state: dict[str, Any] = {  # tensors and plain values only: checkpoints load with weights_only=True
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Trainer:
    def __init__(self, job: Job) -> None:
        self.job = job
        cfg, d = job.cfg, job.dist
        self.cfg, self.dist, self.device = cfg, d, d.device
        torch.manual_seed(cfg.seed + d.rank)
        self.model = build_model(cfg.model, len(job.classes))
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
        self.last_checkpoint = time.monotonic()
        self.last_epoch: dict[str, Any] = {}
        self.images_per_s: float | None = None
        self.tensorboard = _tensorboard(job.tensorboard_dir) if d.main else None
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
        self.job.report(self._progress())
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
            if self.dist.main:  # after the save: a job killed in between redoes the epoch's end, not a record
                self.job.metrics.write("epoch", step=p.global_step, **record)
                self._scalars("epoch", record)
                shown = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
                print(f"epoch {p.epoch}/{cfg.epochs}: {shown}", flush=True)
            self.job.report(self._progress(record))
            result = record
            if p.epoch < cfg.epochs:
                self.control_point()  # a signal that came during validation is answered now, not an epoch later
        self.dist.sync_buffers(self.model)
        digests = self.dist.gather(weights_digest(self.model))
        if self.dist.main:
            self.job.metrics.write("final", step=p.global_step, weights_sha256=digests, **result)
        print(f"rank {self.dist.rank}: final weights sha256 {digests[self.dist.rank]}", flush=True)
        return result

    def _progress(self, record: dict[str, Any] | None = None) -> dict[str, float]:
        p = self.progress
        out = {
            "epoch": float(p.epoch),
            "epochs": float(self.cfg.epochs),
            "step": float(p.global_step),
            "steps_total": float(self.cfg.epochs * self.steps),
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
        return out

    def batches(self) -> Iterator[Batch]:
        """This epoch's train batches; the loader and its workers persist, each iteration is the next epoch."""
        cfg, p = self.cfg, self.progress
        if self._train_loader is None or self._train_loader_epoch != p.epoch:
            self._train_loader = self._make_train_loader()
        self._train_loader_epoch = p.epoch + 1
        batches = iter(self._train_loader)
        if self.decoder == "device":
            return on_device(batches, self.device, cfg.image_size, extra_augment(cfg.auto_augment))
        return batches

    def _make_train_loader(self) -> DataLoader[Any]:
        cfg, p, d = self.cfg, self.progress, self.dist
        shares = functools.partial(
            train_shares,
            self.job.train_shards,
            seed=cfg.seed,
            world=d.world,
            rank=d.rank,
            workers=self.workers,
            batches=self.steps * cfg.grad_accum,
            nodes=share_nodes(cfg, d.nodes),
        )
        done = p.step_in_epoch * cfg.grad_accum
        # dealt here first, so that a bad split is an error in the trainer, not in a worker
        workers = min(self.workers, len(shares(epoch=p.epoch, done=done)))
        if workers < self.workers and p.step_in_epoch == 0 and p.epoch == 0 and d.main:
            print(
                f"train.workers: {workers} of {self.workers} per task: a task reads {workers} shard(s) an epoch; "
                "smaller shards (shard.shard_size_mb) let more workers decode in parallel",
                flush=True,
            )
        stream = TrainStream(
            shares,
            epoch=p.epoch,
            done=done,
            batch_size=cfg.batch_size,
            augment=Augment(cfg.image_size, self.decoder, train=True, auto_augment=cfg.auto_augment),
            seed=cfg.seed,
            shuffle_buffer=cfg.shuffle_buffer,
            pipeline=self.job.pipeline,
        )
        seed = sample_seed(cfg.seed, d.rank, "loader")
        return make_loader(stream, workers, pin_memory=self.device.type == "cuda", seed=seed, persistent=True)

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
        if not d.main:
            return
        self.job.metrics.write(
            "train",
            step=p.global_step,
            epoch=p.epoch + p.step_in_epoch / self.steps,
            loss=loss,
            lr=self.optimizer.param_groups[0]["lr"],
            images_per_s=images / elapsed,
            step_s=elapsed / max(window.batches / self.cfg.grad_accum, 1),
            data_wait_s=window.wait,
            data_wait_fraction=window.wait / elapsed,
        )
        self._scalars(
            "train", {"loss": loss, "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": images / elapsed}
        )
        print(
            f"step {p.global_step} (epoch {p.epoch + 1}, {p.step_in_epoch}/{self.steps}): loss {loss:.4f} "
            f"{images / elapsed:.1f} img/s, data wait {window.wait / elapsed:.0%}",
            flush=True,
        )
        self.images_per_s = images / elapsed
        self.job.report(self._progress())

    def _scalars(self, group: str, values: dict[str, Any]) -> None:
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(f"{group}/{key}", value, self.progress.global_step)
            self.tensorboard.flush()

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


def _tensorboard(directory: Path | None) -> Any:
    """A SummaryWriter when ``tensorboard`` is installed (it is optional); metrics.jsonl is written either way."""
    if directory is None or importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(directory))


def val_loader(
    shards: list[Shard],
    dist: Dist,
    *,
    batch_size: int,
    image_size: int,
    workers: int,
    decoder: Decoder,
    pipeline: Pipeline | None = None,
    persistent: bool = False,
) -> DataLoader[Any] | None:
    """This rank's val loader; None when the rank has no val shards (it still joins the sums)."""
    shares = val_shares(shards, world=dist.world, rank=dist.rank, workers=workers)
    if not shares:
        return None
    stream = ValStream(
        shares, batch_size=batch_size, augment=Augment(image_size, decoder, train=False), pipeline=pipeline
    )
    on_gpu = dist.device.type == "cuda"
    return make_loader(stream, min(workers, len(shares)), pin_memory=on_gpu, seed=0, persistent=persistent)


def val_batches(loader: DataLoader[Any] | None, decoder: Decoder, device: torch.device, size: int) -> Iterator[Batch]:
    if loader is None:
        return iter(())
    return on_device(iter(loader), device, size, None) if decoder == "device" else iter(loader)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, batches: Iterable[Batch], dist: Dist, *, precision: Precision, channels_last: bool
) -> dict[str, float]:
    """Top-1, top-5 and loss over every val sample, each counted once across all ranks."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=dist.device)  # loss sum, top-1, top-5, samples
    for images, labels in batches:
        x = normalize(images, dist.device, channels_last)
        y = labels.to(dist.device, non_blocking=True)
        with precision.autocast():
            logits = model(x)
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(y.unsqueeze(1))
        totals += torch.stack(
            [
                F.cross_entropy(logits, y, reduction="sum").double(),
                hits[:, :1].sum().double(),
                hits.any(dim=1).sum().double(),
                torch.full((), float(len(y)), dtype=torch.float64, device=dist.device),  # a fill, not a copy
            ]
        )
    loss_sum, top1, top5, n = dist.sum(totals).tolist()
    per = max(n, 1)
    return {"val_loss": loss_sum / per, "top1": top1 / per, "top5": top5 / per, "val_samples": n}
