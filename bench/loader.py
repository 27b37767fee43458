"""Training-loader throughput: clusterdeck's loader against torchvision's ImageFolder pipeline and a decode ceiling.

Contenders, all on the same JPEGs (photo-like 1/f noise at ImageNet's sizes and bytes, warm
in the page cache), the same number of loader workers (--workers, default: every core), the
same batch size, in this one process, in a fresh random order in each of --repeat rounds
(--seed); each runs one epoch over all images, worker start included. Rates and ratios are
medians over the rounds (a ratio is taken within a round, so a slow spell of the machine hits
both sides). Each side's timed batches are what training takes in: normalised float32 images.

- classic: ``torchvision.datasets.ImageFolder`` + ``DataLoader`` with PIL decode,
  RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize (float32 batches);
- ours: clusterdeck's train loader over the same images sharded (``decode = "cpu"``): crops
  planned from the header, each decoded the cheaper way (only the crop's region, or the
  whole image at a reduced DCT scale), uint8 batches, normalised to float32 in this process
  by the trainer's own ``normalize`` (training does it on its device), inside the timing;
- ours-pil: the same loader with ``decode = "pil"`` (full-size PIL decode, PIL resize);
- crops: each image's RandomResizedCrop box decoded as ours decodes it (region, or the whole
  image at a DCT scale where that is cheaper), nothing else: no resize, no batch, no
  normalisation (the ceiling of a loader that decodes only what its crops keep);
- decode: ``torchvision.io.decode_jpeg`` of every whole image, nothing else (the ceiling of a
  loader that decodes every pixel, as ours did before region decoding).

    python bench/loader.py [--images 2000] [--image-size 224] [--batch 64] [--workers N] [--repeat 5] [--seed 0]

Prints images/s of each, then ours/classic (target >= 3.0), ours/crops and ours/decode.

``--train MODEL`` instead measures the trainer's images/s on the real loader (``--decode``,
by default ``device``: batched nvJPEG on a GPU) over its images/s on synthetic in-memory
batches, with ``--amp bf16``: the share of the model's speed the loader lets training reach
(target >= 0.9).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from shard import ours as shard_tree  # bench/shard.py
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms
from torchvision.io import decode_jpeg, read_file

from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.steps.train_spec import TrainSpec
from clusterdeck.jobs.train.crops import decode_box, read_header, train_plan
from clusterdeck.jobs.train.data import IMAGENET_MEAN, IMAGENET_STD, Augment, Batch, TrainStream
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.loaders import make_loader
from clusterdeck.jobs.train.loop import Job, Trainer
from clusterdeck.jobs.train.model_input import normalize
from clusterdeck.jobs.train.order import steps_per_epoch, train_shares
from clusterdeck.jobs.train.region_decode import region_if_cheaper
from clusterdeck.jobs.train.shardset import Shard, read_shardset
from clusterdeck.jobs.train.sizing import Decoder


def photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A 1/f-noise colour image: detail at every scale, so it compresses and decodes like a photograph."""
    total = np.zeros((height, width, 3), np.float32)
    scale = 4
    while scale <= max(width, height):
        h, w = max(2, height * scale // max(width, height)), max(2, width * scale // max(width, height))
        field = rng.normal(0, 1, (h, w, 3)).astype(np.float32)
        up = [
            Image.fromarray(field[..., c], mode="F").resize((width, height), Image.Resampling.BICUBIC) for c in range(3)
        ]
        total += np.stack([np.asarray(u) for u in up], axis=-1) * (300 / scale**0.5)
        scale *= 2
    return Image.fromarray(np.clip(total + 128, 0, 255).astype(np.uint8))


def make_tree(root: Path, images: int, classes: int = 10, seed: int = 0) -> Path:
    """``images`` JPEGs (quality 90; shorter side 300–500 px, 1.2–1.5 aspect) in ``classes`` folders;
    a quarter generated, the rest byte copies under new names."""
    rng = np.random.default_rng(seed)
    distinct = []
    for _ in range(max(classes, images // 4)):
        short = int(rng.integers(300, 501))
        long = int(short * rng.uniform(1.2, 1.5))
        width, height = (long, short) if rng.random() < 0.7 else (short, long)
        out = io.BytesIO()
        photo(rng, width, height).save(out, "JPEG", quality=90)
        distinct.append(out.getvalue())
    tree = root / "train"
    for k in range(images):
        folder = tree / f"n{k % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img_{k}.JPEG").write_bytes(distinct[k % len(distinct)])
    return tree


def classic(tree: Path, size: int, batch: int, workers: int) -> DataLoader[Any]:
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    dataset = datasets.ImageFolder(str(tree), transform=transform)
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)


def ours(shards: list[Shard], size: int, batch: int, workers: int, decoder: Decoder) -> DataLoader[Any]:
    steps = steps_per_epoch(sum(s.samples for s in shards), 1, batch, 1)
    shares = functools.partial(train_shares, shards, seed=0, world=1, rank=0, workers=workers, batches=steps)
    stream = TrainStream(
        shares,
        epoch=0,
        done=0,
        batch_size=batch,
        augment=Augment(size, decoder, train=True),
        seed=0,
        shuffle_buffer=1000,
    )
    return make_loader(stream, min(workers, len(shares(epoch=0, done=0))), pin_memory=False, seed=0)


class DecodeOnly(Dataset[tuple[int, int]]):
    """Each image decoded whole; only its height leaves the worker."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return int(decode_jpeg(read_file(str(self.files[index]))).shape[1]), 0


class DecodeCrops(DecodeOnly):
    """Each image's train crop decoded as ours decodes it (the region, or the whole at a DCT scale), nothing else."""

    def __init__(self, files: list[Path], size: int) -> None:
        super().__init__(files)
        self.size = size

    def __getitem__(self, index: int) -> tuple[int, int]:
        data = self.files[index].read_bytes()
        key = self.files[index].stem
        header = read_header(data, key)
        plan = train_plan(header.width, header.height, torch.Generator().manual_seed(index))
        region = region_if_cheaper(data, plan, self.size, key)
        return int((region if region is not None else decode_box(data, plan, self.size)[0]).shape[1]), 0


def decode_only(dataset: Dataset[tuple[int, int]], batch: int, workers: int) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Our uint8 batch as the classic side's: normalised float32 (the trainer's ``normalize``, here on the CPU)."""
    return normalize(images, torch.device("cpu"), channels_last=False)


def steady_rate(
    loader: DataLoader[Any], warmup: int, finish: Callable[[torch.Tensor], Any] = lambda images: images
) -> float:
    """Images/s of an epoch after its first ``warmup`` batches (worker start, first allocations, shuffle fill);
    ``finish`` (timed) turns each batch into what training takes in."""
    started, images = 0.0, 0
    for k, (batch, labels) in enumerate(loader):
        if k == warmup:
            started, images = time.perf_counter(), 0
        finish(batch)
        images += len(labels)
    return images / (time.perf_counter() - started)


def compare(args: argparse.Namespace, root: Path) -> None:
    tree = make_tree(root, args.images)
    files = sorted(tree.rglob("*.JPEG"))
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    shard_tree(tree, root / "shards", shard_mb=8, workers=2)
    shards = read_shardset(root / "shards", "bench").splits["train"]
    workers = args.workers
    warmup = 2 * max(workers, 1)
    if args.images // args.batch <= 2 * warmup:
        raise SystemExit(f"--images {args.images} makes too few batches of {args.batch} past a {warmup}-batch warm-up")
    print(
        f"{args.images} JPEGs, {size_mb / args.images * 1000:.0f} KB each, {len(shards)} shards; "
        f"crop {args.image_size} px, batch {args.batch}, {workers} workers, {os.cpu_count()} cores; "
        f"timed after each loader's first {warmup} batches"
    )
    print("classic, ours and ours-pil each timed to normalised float32 batches (ours: uint8 + normalize)")
    contenders: dict[str, Callable[[], float]] = {
        "classic": lambda: steady_rate(classic(tree, args.image_size, args.batch, workers), warmup),
        "ours": lambda: steady_rate(ours(shards, args.image_size, args.batch, workers, "cpu"), warmup, as_float),
        "ours-pil": lambda: steady_rate(ours(shards, args.image_size, args.batch, workers, "pil"), warmup, as_float),
        "crops": lambda: steady_rate(decode_only(DecodeCrops(files, args.image_size), args.batch, workers), warmup),
        "decode": lambda: steady_rate(decode_only(DecodeOnly(files), args.batch, workers), warmup),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    rng = random.Random(args.seed)
    for _ in range(args.repeat):
        for name in rng.sample(list(contenders), len(contenders)):
            rates[name].append(contenders[name]())
    for name, got in rates.items():
        print(f"{name:<9} {statistics.median(got):6.0f} images/s (rounds {', '.join(f'{r:.0f}' for r in got)})")

    def ratio(a: str, b: str) -> str:
        per_round = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
        return f"{statistics.median(per_round):5.2f}  (rounds {min(per_round):.2f}–{max(per_round):.2f})"

    print(f"ours / classic     {ratio('ours', 'classic')}  target >= 3.0")
    print(f"ours / crops       {ratio('ours', 'crops')}  share of the crop-decode ceiling")
    print(f"ours / decode      {ratio('ours', 'decode')}  against decoding every whole image")
    print(f"ours-pil / classic {ratio('ours-pil', 'classic')}  the loader alone, with the classic decoder")


def train_rate(args: argparse.Namespace, shards: list[Shard], root: Path, synthetic: list[Batch] | None) -> float:
    """Trainer images/s over one epoch, the first ``WARMUP`` steps untimed: on the real loader, or on ``synthetic``."""
    cfg = TrainSpec(
        model=args.train,
        image_size=args.image_size,
        batch_size=args.batch,
        amp=args.amp,
        decode=args.decode,
        workers=args.workers,
        log_every_steps=10**6,
        checkpoint_every_min=10**6,
    )
    dist = Dist(rank=0, world=1, local_rank=0, device=torch.device(args.device))
    metrics = MetricsWriter(root / f"metrics-{time.monotonic_ns()}.jsonl")
    trainer = Trainer(Job(cfg, [f"c{k}" for k in range(10)], shards, [], root / "ckpt", metrics, dist))
    clock: list[float] = []
    batches = trainer.batches() if synthetic is None else iter(synthetic)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train_one_epoch(_clocked(batches, WARMUP, clock, dist.device))
    if dist.device.type == "cuda":
        torch.cuda.synchronize()
    trainer.close()
    return (trainer.steps - WARMUP) * args.batch / (time.perf_counter() - clock[0])


WARMUP = 3


def _clocked(batches: Iterator[Batch], warmup: int, clock: list[float], device: torch.device) -> Iterator[Batch]:
    """``batches``, noting the time the batch after the warm-up is asked for."""
    for k, batch in enumerate(batches):
        if k == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            clock.append(time.perf_counter())
        yield batch


def train(args: argparse.Namespace, root: Path) -> None:
    real, fake, steps = train_ratio(args, root)
    print(
        f"{args.train} {args.amp} on {args.device}, decode {args.decode}, {args.image_size} px, batch {args.batch}, "
        f"{steps} steps ({WARMUP} untimed)"
    )
    print(f"real loader {real:8.0f} images/s\nsynthetic   {fake:8.0f} images/s")
    print(f"real / synthetic {real / fake:5.2f}  (target >= 0.9)")


def train_ratio(args: argparse.Namespace, root: Path) -> tuple[float, float, int]:
    """The trainer's images/s on the real loader and on synthetic batches, and the steps of the epoch timed
    (bench/gpu_check.py's row h calls this too)."""
    tree = make_tree(root, args.images)
    shard_tree(tree, root / "shards", shard_mb=8, workers=2)
    shards = read_shardset(root / "shards", "bench").splits["train"]
    steps = steps_per_epoch(sum(s.samples for s in shards), 1, args.batch, 1)
    if steps <= WARMUP:
        raise SystemExit(f"--images {args.images} makes {steps} steps of {args.batch}; more than {WARMUP} are needed")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g)
    synthetic = [(images, torch.randint(0, 10, (args.batch,), generator=g))] * steps
    real = train_rate(args, shards, root, None)
    fake = train_rate(args, shards, root, synthetic)
    return real, fake, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the rounds' random orders")
    parser.add_argument("--train", metavar="MODEL", help="the trainer on the real loader against synthetic batches")
    parser.add_argument("--amp", default="bf16")
    parser.add_argument("--decode", default="device", help="--train: the loader's decoder (default: on the device)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-loader-", dir=os.environ.get("BENCH_DIR")))
    try:
        train(args, root) if args.train else compare(args, root)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
