"""The DataLoader of the train and val streams: one intra-op thread per worker, pinned batches, persistent workers."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from jobs.signals import worker_signals

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
