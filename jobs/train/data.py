"""The loaders: webdataset tar streams → decoded, augmented uint8 batches, in the order ``jobs.train.order`` fixes.

Batches leave the workers as uint8 NCHW tensors (a quarter of the bytes of float32); the
training process normalises them on its device. Each sample's augmentation is seeded from
(seed, epoch, key, pass), so an epoch replays identically however it was interrupted.
"""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms import v2
from webdataset.tariterators import group_by_keys, tar_file_iterator

from jobs.shard.encode import IMAGE_FIELDS
from jobs.signals import worker_signals
from jobs.stage.job import StageFailed, wait_staged
from jobs.telemetry.pipeline import Pipeline
from jobs.train.order import WorkerShare
from jobs.train.shardset import Shard

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Batch = tuple[torch.Tensor, torch.Tensor]


class ShardReadError(Exception):
    """A shard could not be read or one of its samples decoded; the message names the shard."""


def train_transform(image_size: int, auto_augment: str) -> v2.Compose:
    steps: list[Any] = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    if auto_augment == "imagenet":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET))
    elif auto_augment == "randaugment":
        steps.append(v2.RandAugment())
    return v2.Compose([*steps, v2.PILToTensor()])


def val_transform(image_size: int) -> v2.Compose:
    return v2.Compose([v2.Resize(image_size * 256 // 224, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])


def read_shard(shard: Shard, pipeline: Pipeline | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard, in file order, as ``{"__key__", "jpg" or "png", "cls"}``; ``pipeline`` counts them."""
    if shard.staging is not None:
        try:
            wait_staged(shard.path, shard.staging)
        except StageFailed as exc:
            raise ShardReadError(str(exc)) from None
    try:
        with open(shard.path, "rb") as f:
            files = ({**s, "__url__": str(shard.path)} for s in tar_file_iterator(f, select_files=_wanted))
            read = 0
            for sample in group_by_keys(files):
                if pipeline is not None:
                    position = f.tell()
                    pipeline.add(position - read)
                    read = position
                yield sample
    except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
        raise ShardReadError(f"shard {shard.path} is unreadable or corrupt: {exc}") from exc


def _wanted(name: str) -> bool:
    return not name.endswith(".json")


def shuffled(samples: Iterator[dict[str, Any]], buffer: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """A bounded shuffle: keep ``buffer`` samples, emit a random one as each new one arrives."""
    pool: list[dict[str, Any]] = []
    for sample in samples:
        if len(pool) < buffer:
            pool.append(sample)
            continue
        k = rng.randrange(len(pool))
        pool[k], sample = sample, pool[k]
        yield sample
    rng.shuffle(pool)
    yield from pool


def sample_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


class TrainStream(IterableDataset[Batch]):
    """One rank's train batches for one epoch; loader worker ``w`` makes ``shares[w].batches - shares[w].skip``."""

    def __init__(
        self,
        shares: list[WorkerShare],
        *,
        batch_size: int,
        image_size: int,
        auto_augment: str,
        seed: int,
        epoch: int,
        shuffle_buffer: int,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.shares = shares
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.transform = train_transform(image_size, auto_augment)
        self.seed, self.epoch, self.buffer = seed, epoch, shuffle_buffer

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        share = self.shares[info.id if info else 0]
        todo = (share.batches - share.skip) * self.batch_size
        samples = self._samples(share.shards, share.skip * self.batch_size)
        batch: list[tuple[torch.Tensor, int]] = []
        for _ in range(todo):
            key, data, label, rnd = next(samples)
            with torch.random.fork_rng(devices=[], enabled=info is None):  # in-process: leave the trainer's RNG be
                torch.manual_seed(sample_seed(self.seed, self.epoch, key, rnd))
                batch.append((self.transform(decode(data, key)), label))
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []

    def _samples(self, shards: list[Shard], skip: int) -> Iterator[tuple[str, bytes, int, int]]:
        """The worker's shards, shuffled, read again in new passes as long as samples are wanted."""
        for rnd in range(1_000_000):
            for shard in shards:
                if skip >= shard.samples:  # consumed before the interruption: not even opened
                    skip -= shard.samples
                    continue
                rng = random.Random(f"{self.seed}:{self.epoch}:{shard.name}:{rnd}")
                for sample in shuffled(read_shard(shard, self.pipeline), self.buffer, rng):
                    if skip:
                        skip -= 1
                        continue
                    yield sample["__key__"], image_of(sample), int(sample["cls"]), rnd
        raise ShardReadError(f"shards {[s.name for s in shards]} hold no samples")


class ValStream(IterableDataset[Batch]):
    """One rank's val batches: every sample of the worker's shards once, the last batch possibly short."""

    def __init__(
        self, shares: list[list[Shard]], *, batch_size: int, image_size: int, pipeline: Pipeline | None = None
    ) -> None:
        self.shares = shares
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.transform = val_transform(image_size)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        shards = self.shares[info.id if info else 0] if self.shares else []
        batch: list[tuple[torch.Tensor, int]] = []
        for shard in shards:
            for sample in read_shard(shard, self.pipeline):
                batch.append((self.transform(decode(image_of(sample), sample["__key__"])), int(sample["cls"])))
                if len(batch) == self.batch_size:
                    yield collate(batch)
                    batch = []
        if batch:
            yield collate(batch)


def image_of(sample: dict[str, Any]) -> bytes:
    """The image member of a sample: .jpg, or .png (lossless npz inputs) and the other kinds the shard step keeps."""
    for field in IMAGE_FIELDS:
        if field in sample:
            data: bytes = sample[field]
            return data
    raise ShardReadError(f"sample {sample['__key__']} in {sample.get('__url__')}: no image member")


def decode(data: bytes, key: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        return image.convert("RGB")
    except Exception as exc:
        raise ShardReadError(f"sample {key}: cannot decode image: {exc}") from exc


def collate(batch: list[tuple[torch.Tensor, int]]) -> Batch:
    return torch.stack([x for x, _ in batch]), torch.tensor([y for _, y in batch], dtype=torch.long)


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)  # a loader worker is one core; more threads only oversubscribe
    worker_signals()


def make_loader(dataset: IterableDataset[Batch], workers: int, pin_memory: bool, seed: int) -> DataLoader[Batch]:
    """``seed``: the loader's own generator, so that starting one never draws from the trainer's RNG."""
    n = workers if workers > 0 else 0
    return DataLoader(
        dataset,
        generator=torch.Generator().manual_seed(seed),
        batch_size=None,
        num_workers=n,
        pin_memory=pin_memory,
        prefetch_factor=4 if n else None,
        worker_init_fn=_init_worker if n else None,
    )
