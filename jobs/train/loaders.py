"""A rank's train and val loaders: its share of the shards, one intra-op thread per worker, pinned batches,
persistent workers."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from clusterdeck.jobs.signals import worker_signals
from clusterdeck.jobs.steps.train_spec import TrainSpec
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.train.data import Augment, TrainStream, ValStream, sample_seed
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.order import share_nodes, train_shares, val_shares
from clusterdeck.jobs.train.shardset import Shard
from clusterdeck.jobs.train.sizing import Decoder

PREFETCH = 4
"""Batches in flight per worker."""


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)  # a loader worker is one core; more threads only oversubscribe
    worker_signals()


def make_loader(
    dataset: IterableDataset[Any], workers: int, *, pin_memory: bool, seed: int, persistent: bool = False
) -> DataLoader[Any]:
    """``seed``: the loader's own generator, so that starting one never draws from the trainer's RNG."""
    n = max(workers, 0)
    return DataLoader(
        dataset,
        generator=torch.Generator().manual_seed(seed),
        batch_size=None,
        num_workers=n,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH if n else None,
        persistent_workers=persistent and n > 0,
        worker_init_fn=_init_worker if n else None,
    )


def train_loader(
    cfg: TrainSpec,
    shards: list[Shard],
    dist: Dist,
    *,
    epoch: int,
    step_in_epoch: int,
    steps: int,
    workers: int,
    decoder: Decoder,
    pipeline: Pipeline | None,
) -> DataLoader[Any]:
    """This rank's train loader from optimizer step ``step_in_epoch`` of ``epoch`` on (``steps`` an epoch); its
    workers persist, and each further iteration of it is the next epoch."""
    shares = functools.partial(
        train_shares,
        shards,
        seed=cfg.seed,
        world=dist.world,
        rank=dist.rank,
        workers=workers,
        batches=steps * cfg.grad_accum,
        nodes=share_nodes(cfg, dist.nodes),
    )
    done = step_in_epoch * cfg.grad_accum
    # dealt here first, so that a bad split is an error in the trainer, not in a worker
    used = min(workers, len(shares(epoch=epoch, done=done)))
    if used < workers and step_in_epoch == 0 and epoch == 0 and dist.main:
        print(
            f"train.workers: {used} of {workers} per task: a task reads {used} shard(s) an epoch; "
            "smaller shards (shard.shard_size_mb) let more workers decode in parallel",
            flush=True,
        )
    stream = TrainStream(
        shares,
        epoch=epoch,
        done=done,
        batch_size=cfg.batch_size,
        augment=Augment(cfg.image_size, decoder, train=True, auto_augment=cfg.auto_augment),
        seed=cfg.seed,
        shuffle_buffer=cfg.shuffle_buffer,
        pipeline=pipeline,
    )
    seed = sample_seed(cfg.seed, dist.rank, "loader")
    return make_loader(stream, used, pin_memory=dist.device.type == "cuda", seed=seed, persistent=True)


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
