"""The loaders: webdataset tar streams → decoded, augmented uint8 batches, in the order ``jobs.train.order`` fixes.

Batches leave the workers as uint8 NCHW tensors (a quarter of the bytes of float32); the
training process normalises them on its device. Each sample's crop, flip and extra
augmentation are drawn from a generator seeded by (seed, epoch, key, pass), so an epoch
replays identically however it was interrupted, and whichever decoder serves it:

- ``cpu``: the workers decode each crop the cheaper way: only its region (``jobs.train.region_decode``),
  or the whole image at the smallest DCT scale that covers it (``jobs.train.crops``); then resize it as uint8;
- ``device``: the workers only read the bytes and plan the crops; the training process
  decodes the JPEGs in batches on its device (nvJPEG on CUDA) and crops there
  (``jobs.train.device_decode``);
- ``pil``: the reference: full-size PIL decode, then the same crops resized by PIL.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.train.crops import (
    JPEG_START,
    Header,
    Plan,
    decode_crop,
    image_batch,
    pil_rgb,
    read_header,
    train_plan,
    undecodable,
    val_plan,
)
from clusterdeck.jobs.train.device_decode import NVJPEG_MODES, Encoded, seeded
from clusterdeck.jobs.train.order import WorkerShare
from clusterdeck.jobs.train.region_decode import decode_cheaper_crop
from clusterdeck.jobs.train.region_decode import installed as region_decode_installed
from clusterdeck.jobs.train.shardread import image_of, read_shard
from clusterdeck.jobs.train.shardset import Shard, ShardReadError
from clusterdeck.jobs.train.sizing import Decoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Batch = tuple[torch.Tensor, torch.Tensor]


def extra_augment(name: str) -> v2.Transform | None:
    """The train augmentation after crop and flip: AutoAugment's ImageNet policy, RandAugment, or none."""
    if name == "imagenet":
        return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
    if name == "randaugment":
        return v2.RandAugment()
    return None


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


class Augment:
    """One sample's work in a loader: plan the crop from the header, then decode here or leave that to the device."""

    def __init__(self, image_size: int, decoder: Decoder, *, train: bool, auto_augment: str = "") -> None:
        self.size, self.decoder = image_size, decoder
        self.extra = extra_augment(auto_augment) if train else None
        # decided here, in the trainer, which says once where nvImageCodec is missing; its workers follow
        self.region = decoder == "cpu" and region_decode_installed()

    def plan(self, header: Header, generator: torch.Generator | None) -> Plan:
        """The train crop drawn from ``generator``; with None, the val crop."""
        if generator is None:
            return val_plan(header.width, header.height, self.size)
        return train_plan(header.width, header.height, generator)

    def pixels(self, data: bytes, key: str, plan: Plan, extra_seed: int) -> torch.Tensor:
        """The sample as uint8 (3, S, S), decoded in this process."""
        if self.decoder == "pil":
            image = TF.resized_crop(decode(data, key), *plan[:4], [self.size, self.size], antialias=True)
            image = TF.horizontal_flip(image) if plan.flip else image
            if self.extra is not None:
                image = seeded(self.extra, image, extra_seed)
            return TF.pil_to_tensor(image)
        pixels = (decode_cheaper_crop if self.region else decode_crop)(data, plan, self.size, key)
        return pixels if self.extra is None else seeded(self.extra, pixels, extra_seed)


class BatchBuilder:
    """Collects samples into one batch: pixels written straight into a (shared-memory) uint8 tensor, or,
    for decoding on the device, the JPEG bytes and their plans."""

    def __init__(self, augment: Augment, batch_size: int) -> None:
        self.augment, self.batch_size = augment, batch_size
        self.shared = get_worker_info() is not None  # leave the worker through shared memory without a copy
        self._start()

    def _start(self) -> None:
        self.n = 0
        self.labels: list[int] = []
        self.images: torch.Tensor | None = None  # allocated with the batch's first sample
        self.encoded: list[bytes] = []
        self.plans: list[Plan] = []
        self.seeds: list[int] = []
        self.at: list[int] = []
        self.keys: list[str] = []
        self.ready: list[torch.Tensor] = []
        self.ready_at: list[int] = []

    def add(self, key: str, data: bytes, label: int, generator: torch.Generator | None) -> None:
        header = read_header(data, key)
        plan = self.augment.plan(header, generator)
        extra_seed = self._extra_seed(generator)
        if self.augment.decoder != "device":
            if self.images is None:
                self.images = image_batch(self.batch_size, self.augment.size)
                if self.shared:
                    self.images.share_memory_()
            self.images[self.n] = self.augment.pixels(data, key, plan, extra_seed)
        elif data[:2] == JPEG_START and header.mode in NVJPEG_MODES:
            self.encoded.append(data)
            self.plans.append(plan)
            self.seeds.append(extra_seed)
            self.at.append(self.n)
            self.keys.append(key)
        else:  # PNG, CMYK JPEG and the other kinds: decoded here, as nvJPEG takes only (RGB or grey) JPEG
            self.ready.append(self.augment.pixels(data, key, plan, extra_seed))
            self.ready_at.append(self.n)
        self.labels.append(label)
        self.n += 1

    def _extra_seed(self, generator: torch.Generator | None) -> int:
        if self.augment.extra is None or generator is None:
            return 0
        return int(torch.randint(0, 2**62, (1,), generator=generator).item())

    @property
    def full(self) -> bool:
        return self.n == self.batch_size

    def take(self) -> Batch | Encoded:
        labels = torch.tensor(self.labels, dtype=torch.long)
        if self.augment.decoder != "device":
            assert self.images is not None
            batch: Batch | Encoded = (self.images[: self.n], labels)
        else:
            size = self.augment.size
            joined = b"".join(self.encoded)
            batch = Encoded(
                data=torch.frombuffer(bytearray(joined), dtype=torch.uint8)
                if joined
                else torch.empty(0, dtype=torch.uint8),
                ends=torch.tensor([len(b) for b in self.encoded], dtype=torch.long).cumsum(0),
                plans=torch.tensor(self.plans, dtype=torch.long).view(-1, 5),
                seeds=torch.tensor(self.seeds, dtype=torch.long),
                at=torch.tensor(self.at, dtype=torch.long),
                ready=torch.stack(self.ready) if self.ready else torch.empty((0, 3, size, size), dtype=torch.uint8),
                ready_at=torch.tensor(self.ready_at, dtype=torch.long),
                labels=labels,
                keys=self.keys,
            )
        self._start()
        return batch


class TrainStream(IterableDataset[Batch]):
    """One rank's train batches, an epoch per iteration: iteration ``i`` is epoch ``epoch + i``.

    ``shares(epoch=, done=)`` deals the epoch's shards to the loader workers (``train_shares``
    with the rank's arguments bound); worker ``w`` makes ``batches - skip`` of its share. Each
    iteration moves the stream to the next epoch, so persistent workers follow the trainer.
    """

    def __init__(
        self,
        shares: Callable[..., list[WorkerShare]],
        *,
        epoch: int,
        done: int,
        batch_size: int,
        augment: Augment,
        seed: int,
        shuffle_buffer: int,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.shares, self.epoch, self.done = shares, epoch, done
        self.batch_size, self.augment = batch_size, augment
        self.seed, self.buffer = seed, shuffle_buffer
        self.pipeline = pipeline

    def __iter__(self) -> Iterator[Batch]:
        epoch, done = self.epoch, self.done
        self.epoch, self.done = epoch + 1, 0
        info = get_worker_info()
        share = self.shares(epoch=epoch, done=done)[info.id if info else 0]
        todo = (share.batches - share.skip) * self.batch_size
        samples = self._samples(share.shards, epoch, share.skip * self.batch_size)
        batch = BatchBuilder(self.augment, self.batch_size)
        for _ in range(todo):
            key, data, label, rnd = next(samples)
            batch.add(key, data, label, torch.Generator().manual_seed(sample_seed(self.seed, epoch, key, rnd)))
            if batch.full:
                yield batch.take()  # type: ignore[misc]

    def _samples(self, shards: list[Shard], epoch: int, skip: int) -> Iterator[tuple[str, bytes, int, int]]:
        """The worker's shards, shuffled, read again in new passes as long as samples are wanted."""
        for rnd in range(1_000_000):
            for shard in shards:
                if skip >= shard.samples:  # consumed before the interruption: not even opened
                    skip -= shard.samples
                    continue
                rng = random.Random(f"{self.seed}:{epoch}:{shard.name}:{rnd}")
                for sample in shuffled(read_shard(shard, self.pipeline), self.buffer, rng):
                    if skip:
                        skip -= 1
                        continue
                    yield sample["__key__"], image_of(sample), int(sample["cls"]), rnd
        raise ShardReadError(f"shards {[s.name for s in shards]} hold no samples")


class ValStream(IterableDataset[Batch]):
    """One rank's val batches: every sample of the worker's shards once, the last batch possibly short."""

    def __init__(
        self, shares: list[list[Shard]], *, batch_size: int, augment: Augment, pipeline: Pipeline | None = None
    ) -> None:
        self.shares = shares
        self.pipeline = pipeline
        self.batch_size, self.augment = batch_size, augment

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        shards = self.shares[info.id if info else 0]
        batch = BatchBuilder(self.augment, self.batch_size)
        for shard in shards:
            for sample in read_shard(shard, self.pipeline):
                batch.add(sample["__key__"], image_of(sample), int(sample["cls"]), None)
                if batch.full:
                    yield batch.take()  # type: ignore[misc]
        if batch.n:
            yield batch.take()  # type: ignore[misc]


def decode(data: bytes, key: str) -> Image.Image:
    """Full-size PIL decode to RGB (the reference decoder)."""
    try:
        return pil_rgb(data)
    except Exception as exc:
        raise undecodable(key, exc) from exc
