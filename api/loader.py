"""``clusterdeck.ShardLoader``: the built-in trainer's shard loader for a user's own training loop.

The same code as the train step's loaders (``jobs.train.loaders``, ``jobs.train.data``): the same shards dealt to
the same ranks and loader workers (``jobs.train.order``), the same crops and decoders, the same staging waits;
batches normalised as the trainer feeds its model. The order of an epoch is a function of (seed, epoch, world
size, rank, workers), never of timing, so ``state_dict`` is two numbers and a resumed job replays the rest of
the interrupted epoch exactly, as the built-in trainer resumes mid-epoch.

Rank and world size come from ``clusterdeck.task()`` (the ``RANK``/``WORLD_SIZE`` a ``[script]`` step sets).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.stage.job import StageFailed, wait_staged
from clusterdeck.jobs.taskenv import read_task_env
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.train.data import Augment, TrainStream, ValStream, sample_seed
from clusterdeck.jobs.train.device_decode import on_device
from clusterdeck.jobs.train.loaders import make_loader
from clusterdeck.jobs.train.model_input import normalize
from clusterdeck.jobs.train.order import train_shares, val_shares
from clusterdeck.jobs.train.shardset import Shard, check_files, read_shardset
from clusterdeck.jobs.train.sizing import size_loader
from clusterdeck.taskview import read_task

Batch = tuple[torch.Tensor, torch.Tensor]
SHUFFLE_BUFFER = 1000
"""Samples a train worker shuffles among (``train.shuffle_buffer``'s default)."""


class ShardLoader:
    """This rank's batches of one split of a shard set: ``for images, labels in loader`` runs one epoch.

    ``images`` are float32 (N, 3, image_size, image_size), normalised with ImageNet's mean and std, on
    ``device`` (None: the CPU); ``labels`` int64 (N,). With ``train=True`` each epoch is ``len(loader)``
    batches of ``batch_size``, the same count on every rank (a rank with fewer samples reads some again), with
    random-resized crops and flips; with ``train=False`` every sample of the split is read once over all
    ranks, centre-cropped, the last batch of each worker possibly short.

    A full pass moves the loader to the next epoch; ``set_epoch`` chooses one. ``workers="auto"`` uses the
    task's CPUs (less one), ``decode="auto"`` decodes on a CUDA ``device`` (nvJPEG) when the task has few CPUs.
    ``rank`` and ``world_size`` default to ``task()``'s (Lightning passes its own).
    """

    def __init__(
        self,
        shards: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        batch_size: int,
        image_size: int = 224,
        train: bool = True,
        epoch: int = 0,
        workers: int | Literal["auto"] = "auto",
        decode: Literal["auto", "cpu", "device", "pil"] = "auto",
        device: torch.device | str | None = None,
        seed: int = 0,
        shuffle_buffer: int = SHUFFLE_BUFFER,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("image_size", image_size), ("shuffle_buffer", shuffle_buffer)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {value!r} must be a whole number of at least 1")
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise ValueError(f"workers: {workers!r} must be 'auto' or a whole number of at least 0")
        here = read_task()
        self.rank = here.rank if rank is None else rank
        self.world_size = here.world_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank: {self.rank} is not in 0 … {self.world_size - 1} (world_size {self.world_size})")
        self.split, self.train = split, train
        self.batch_size, self.image_size, self.seed, self.shuffle_buffer = batch_size, image_size, seed, shuffle_buffer
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        size = size_loader(workers, decode, cuda=self.device.type == "cuda")
        self.decoder, self.workers, self._workers_setting = size.decoder, size.workers, workers
        self.root = _shard_root(shards, here.shards)
        self.classes, self.shard_list = _read_split(self.root, split)
        """The shard set's class names, in label order: ``len(loader.classes)`` is the model's class count."""
        self.shard_nodes = read_task_env().shard_nodes  # stage scope 'node': the node's share first, as staged
        if self.shard_nodes > 1 and train and (seed != 0 or self.world_size != here.world_size):
            raise ValueError(
                f"seed/world_size: the step staged each node's share of the shards (stage scope 'node') for "
                f"ShardLoader(seed=0) over its {here.world_size} tasks; read with those, or stage scope 'all'"
            )
        self.pipeline = _pipeline()
        self.epoch, self.step = epoch, 0
        self._steps = self._count_steps()

    # --- what an epoch is -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch on this rank: with ``train=True`` the optimizer steps of an epoch, as the trainer's."""
        return self._steps

    def set_epoch(self, epoch: int) -> None:
        """The next pass reads ``epoch`` (from its first batch): the shuffle, crops and flips depend on it."""
        self.epoch, self.step = epoch, 0

    def epoch_shards(self, epoch: int | None = None) -> list[str]:
        """The names of the shards this rank reads in ``epoch`` (default: the next pass's)."""
        if not self.train:
            return [s.name for share in self._val_shares() for s in share]
        shares = self._train_shares(epoch=self.epoch if epoch is None else epoch, done=0)
        return sorted({s.name for share in shares for s in share.shards})

    def _count_steps(self) -> int:
        if not self.train:
            return sum(math.ceil(sum(s.samples for s in share) / self.batch_size) for share in self._val_shares())
        samples = sum(s.samples for s in self.shard_list)
        steps = samples // (self.world_size * self.batch_size)
        if steps == 0:
            raise ValueError(
                f"batch_size: {self.batch_size} per task × {self.world_size} task(s) is more than the "
                f"{samples} samples of the {self.split!r} split of {self.root}"
            )
        if len(self.shard_list) < self.world_size:
            raise ValueError(
                f"shards: {self.root} has {len(self.shard_list)} {self.split!r} shard(s) for {self.world_size} tasks; "
                "every task needs at least one (shard with a smaller shard_size_mb)"
            )
        return steps

    def _train_shares(self, *, epoch: int, done: int) -> list[Any]:
        return self._dealer()(epoch=epoch, done=done)

    def _dealer(self) -> functools.partial[list[Any]]:
        return functools.partial(
            train_shares,
            self.shard_list,
            seed=self.seed,
            world=self.world_size,
            rank=self.rank,
            workers=self.workers,
            batches=self._steps,
            nodes=self.shard_nodes,
        )

    def _val_shares(self) -> list[list[Shard]]:
        return val_shares(self.shard_list, world=self.world_size, rank=self.rank, workers=self.workers)

    # --- reading ------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        """The rest of the current epoch, from ``step`` on; with its last batch the loader moves to the next epoch."""
        epoch, done = self.epoch, self.step
        on_gpu = self.device.type == "cuda"
        loader_seed = sample_seed(self.seed, self.rank, "loader")
        if self.train:
            deal = self._dealer()
            stream: Any = TrainStream(
                deal,
                epoch=epoch,
                done=done,
                batch_size=self.batch_size,
                augment=Augment(self.image_size, self.decoder, train=True),
                seed=self.seed,
                shuffle_buffer=self.shuffle_buffer,
                pipeline=self.pipeline,
            )
            used = min(self.workers, len(deal(epoch=epoch, done=done)))
            skip = 0  # the stream itself starts after the batches already trained on
        else:
            shares = self._val_shares()
            stream = ValStream(
                shares,
                batch_size=self.batch_size,
                augment=Augment(self.image_size, self.decoder, train=False),
                pipeline=self.pipeline,
            )
            used, skip = min(self.workers, len(shares)), done
        batches: Iterator[Any] = iter(make_loader(stream, used, pin_memory=on_gpu, seed=loader_seed))
        if self.decoder == "device":
            batches = on_device(batches, self.device, self.image_size, None)
        for images, labels in batches:
            if skip:
                skip -= 1
                continue
            self.step += 1  # counted before the batch is handed over: a checkpoint saved with it skips it
            if self.step == self._steps:  # the epoch's last batch: on to the next epoch, even if the caller
                self.epoch, self.step = epoch + 1, 0  # stops here without asking for more (Lightning does)
            yield normalize(images, self.device, False), labels.to(self.device, non_blocking=True)

    # --- resuming -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Where the loader is: the epoch and the batches of it already handed out, and what the order depends on.
        Save it with the model's checkpoint; ``load_state_dict`` continues with the next batch."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "world_size": self.world_size,
            "workers": self.workers,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continues where ``state`` was taken. The order depends on the world size, batch size, seed and workers:
        with ``workers="auto"`` the saved worker count is used again; another world size, batch size or seed
        cannot replay the epoch, so it restarts at the batch that covers the same number of samples."""
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if self._workers_setting == "auto" and state.get("workers", self.workers) != self.workers:
            self.workers = int(state["workers"])
            self._steps = self._count_steps()
        same = all(state.get(k, v) == v for k, v in (("world_size", self.world_size), ("batch_size", self.batch_size),
                                                      ("seed", self.seed)))  # fmt: skip
        if not same:
            seen = self.step * int(state.get("world_size", 1)) * int(state.get("batch_size", self.batch_size))
            self.step = min(seen // (self.world_size * self.batch_size), self._steps)
            warnings.warn(
                f"ShardLoader: the state was saved with {state.get('world_size')} task(s), batch size "
                f"{state.get('batch_size')}, seed {state.get('seed')}: epoch {self.epoch} goes on at batch {self.step} "
                "with another order",
                stacklevel=2,
            )
        if self.step >= self._steps:  # saved after the epoch's last batch: the next epoch is next
            self.epoch, self.step = self.epoch + 1, 0


def _shard_root(shards: str | os.PathLike[str] | None, from_task: Path | None) -> Path:
    if shards is not None:
        return Path(shards)
    if from_task is None:
        raise ValueError(
            "shards: none given and CLUSTERDECK_SHARDS is not set (it is in a [script] step with shards); "
            "pass the shard set's directory, the one holding index.json"
        )
    return from_task


def _read_split(root: Path, split: str) -> tuple[list[str], list[Shard]]:
    """The split's shards; under a staging view, each waited for as it is copied ('ahead'), as the trainer does."""
    staging = read_task_env().staging
    staged = staging is not None and root.absolute().is_relative_to(staging.absolute())
    try:
        if staged:
            assert staging is not None
            wait_staged(root / "index.json", staging)  # the staged set's index may itself still be on its way
        shard_set = read_shardset(root, "shards")
        shards = shard_set.split(split, "split")
        if not staged:
            check_files(shards, "shards")
    except (UserError, StageFailed) as exc:
        raise ValueError(str(exc)) from None
    waits = staging if staged else None
    return shard_set.classes, [replace(s, staging=waits) for s in shards]


def _pipeline() -> Pipeline | None:
    """The job's data-pipeline counters when the step shares them (``CLUSTERDECK_PIPELINE``)."""
    name = read_task_env().pipeline
    if not name:
        return None
    try:
        return Pipeline.attach(name)
    except OSError as exc:  # another /dev/shm (a container): the counters are telemetry, never a reason to fail
        warnings.warn(f"clusterdeck: no pipeline counters ({exc})", stacklevel=3)
        return None
