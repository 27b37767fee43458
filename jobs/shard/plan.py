"""The shard plan: a seeded global permutation cut into equal-count shards.

Shards are cut by sample count, from a mean stored size measured on a seeded sample of
inputs, so planning needs a listing but not a ``stat`` of every file (1.28 M stats on a
parallel filesystem take minutes). Every task of an array computes the same
plan from the same listing and seed, and writes a contiguous range of its shards.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from clusterdeck.jobs.shard.encode import Encoder
from clusterdeck.jobs.shard.sources import FileSource, Listing, Source

SIZE_PROBES = 256
# Three tar headers, padding, and the .cls and .json members of one sample.
PER_SAMPLE_OVERHEAD = 3 * 512 + 3 * 256 + 160


@dataclass(frozen=True)
class ShardJob:
    name: str  # train-000003
    split: str
    source: Source
    indices: np.ndarray
    """Each sample's place in the split's canonical order (int64): its key is ``<split>-<index:08d>``."""
    names: list[str]
    locs: list[Any]
    labels: np.ndarray
    encoder: Encoder

    @property
    def keys(self) -> list[str]:
        """The samples' webdataset keys, made when the shard is written: at 13 M samples, keeping them as
        strings for the whole plan would take 800 MB (``bench/plan_scale.py``)."""
        return [f"{self.split}-{i:08d}" for i in self.indices.tolist()]

    def members_digest(self) -> str:
        """Identifies what the shard must contain, so a shard from other settings is never reused.

        Files stored as they are hash as they always have (shard sets made before the other
        inputs and pre-resize existed stay valid); anything else also hashes its source,
        each sample's locator, and the encoding.
        """
        h = hashlib.sha256()
        if isinstance(self.source, FileSource) and self.encoder == Encoder():
            for key, name, label in zip(self.keys, self.names, self.labels.tolist(), strict=True):
                h.update(f"{key}\0{name}\0{label}\n".encode())
            return h.hexdigest()
        h.update(f"{self.source!r}\0{self.encoder!r}\n".encode())
        for key, name, loc, label in zip(self.keys, self.names, self.locs, self.labels.tolist(), strict=True):
            h.update(f"{key}\0{name}\0{loc}\0{label}\n".encode())
        return h.hexdigest()


def sample_bytes(listing: Listing, stored_size: Callable[[Any], int | None], seed: int) -> float:
    """Mean bytes one sample takes in a shard, from a seeded sample (``stored_size(loc)``; None: unreadable)."""
    if not listing.names:
        return float(PER_SAMPLE_OVERHEAD)
    rng = np.random.default_rng([seed, 1])
    probes = rng.choice(len(listing.names), size=min(SIZE_PROBES, len(listing.names)), replace=False)
    sizes = [size for i in sorted(probes.tolist()) if (size := stored_size(listing.locs[i])) is not None]
    return (sum(sizes) / len(sizes) if sizes else 0) + PER_SAMPLE_OVERHEAD


def samples_per_shard(mean_bytes: float, shard_size_mb: float, max_samples: int | None) -> int:
    """Samples per shard, for shards of about ``shard_size_mb`` of samples of ``mean_bytes`` each."""
    count = max(1, math.floor(shard_size_mb * 1e6 / mean_bytes))
    return min(count, max_samples) if max_samples else count


def plan_split(split: str, listing: Listing, per_shard: int, seed: int, encoder: Encoder) -> list[ShardJob]:
    """A split's shards: the permutation of its canonical order, cut every ``per_shard`` samples."""
    order = np.random.default_rng([seed, 0]).permutation(len(listing.names))
    jobs = []
    for number, start in enumerate(range(0, len(order), per_shard)):
        picked = order[start : start + per_shard]
        jobs.append(
            ShardJob(
                name=f"{split}-{number:06d}",
                split=split,
                source=listing.source,
                indices=picked,
                names=[listing.names[i] for i in picked.tolist()],
                locs=[listing.locs[i] for i in picked.tolist()],
                labels=listing.labels[picked],
                encoder=encoder,
            )
        )
    return jobs


def task_slice(count: int, task: int, tasks: int) -> range:
    """Contiguous, near-equal ranges: task k of n writes shards [k*count/n, (k+1)*count/n)."""
    return range(count * task // tasks, count * (task + 1) // tasks)
