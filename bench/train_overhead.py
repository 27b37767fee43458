"""Overhead of clusterdeck's training loop: its images/s against a bare PyTorch loop, same model, batch, optimizer.

Both get synthetic batches already in memory, so only the loops differ: ours normalises uint8
batches on the device, runs the scaler/autocast wrappers, counts data-wait time, writes
metrics every ``--log-every`` steps, checks for signals and checkpoint deadlines; the bare
loop is forward, loss, backward, step on float tensors. Both run in this process in each of
``--rounds`` rounds, taking turns to go first (bare first in odd rounds, ours in even ones), so
neither always gets the warmer or the cooler machine; the ratio printed is the median of the
per-round ratios.

    python bench/train_overhead.py [--model resnet18] [--image-size 64] [--batch 32] [--steps 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision

from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.steps.train_spec import TrainSpec
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.loop import Job, Trainer
from clusterdeck.jobs.train.model_input import normalize
from clusterdeck.jobs.train.shardset import Shard

CLASSES = 100


def synthetic(batch: int, size: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (steps, batch, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (steps, batch), generator=g)
    return images, labels


def bare_loop(cfg: TrainSpec, images: torch.Tensor, labels: torch.Tensor) -> float:
    torch.manual_seed(cfg.seed)
    model = torchvision.models.get_model(cfg.model, num_classes=CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    criterion = torch.nn.CrossEntropyLoss()
    inputs = [normalize(x, torch.device("cpu"), False) for x in images]  # made before the clock starts
    model.train()
    started = time.perf_counter()
    for x, y in zip(inputs, labels, strict=True):
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(inputs) * inputs[0].shape[0] / (time.perf_counter() - started)


def our_loop(cfg: TrainSpec, images: torch.Tensor, labels: torch.Tensor, metrics: Path) -> float:
    steps, batch = images.shape[0], images.shape[1]
    job = Job(
        cfg=cfg,
        classes=[f"c{i}" for i in range(CLASSES)],
        train_shards=[Shard("synthetic", Path("/nonexistent"), steps * batch, 0, "")],
        val_shards=[],
        checkpoint_dir=metrics.parent / "checkpoints",
        metrics=MetricsWriter(metrics),
        dist=Dist(0, 1, 0, torch.device("cpu")),
    )
    trainer = Trainer(job)
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = zip(images, labels, strict=True)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines are part of the work, not of the report
        trainer.train_one_epoch(batches)
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--log-every", type=int, default=5)
    args = parser.parse_args()
    cfg = TrainSpec(
        model=args.model,
        image_size=args.image_size,
        batch_size=args.batch,
        amp="off",  # CPU: both loops in fp32
        channels_last=False,
        workers=0,
        log_every_steps=args.log_every,
        checkpoint_every_min=60,
        schedule="step",
    )
    images, labels = synthetic(args.batch, args.image_size, args.steps)
    print(
        f"{args.model}, batch {args.batch}, {args.image_size} px, {args.steps} steps a round, "
        f"{torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        bare_loop(cfg, images[:2], labels[:2])  # warm-up: allocator, kernels
        our_loop(cfg, images[:2], labels[:2], Path(tmp) / "warm.jsonl")
        ratios = []
        for r in range(args.rounds):
            if r % 2 == 0:
                bare = bare_loop(cfg, images, labels)
                ours = our_loop(cfg, images, labels, Path(tmp) / f"m{r}.jsonl")
            else:
                ours = our_loop(cfg, images, labels, Path(tmp) / f"m{r}.jsonl")
                bare = bare_loop(cfg, images, labels)
            ratios.append(ours / bare)
            first = "bare" if r % 2 == 0 else "clusterdeck"
            print(
                f"round {r + 1} ({first} first): bare {bare:.1f} img/s, clusterdeck {ours:.1f} img/s, "
                f"ratio {ours / bare:.3f}"
            )
    print(f"clusterdeck / bare PyTorch images/s: {statistics.median(ratios):.3f} (median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
