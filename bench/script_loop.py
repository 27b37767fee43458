"""The tiny training loop ``bench/script_overhead.py`` times: a small CNN on clusterdeck's ShardLoader, the same
code run by hand and as a ``[script]`` step. It times its own epochs after the first (worker start and warm-up
left out) and writes images/s to ``--out`` (default: the step's checkpoint directory)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import clusterdeck


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", default=None)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    task = clusterdeck.task()
    torch.manual_seed(0)
    loader = clusterdeck.ShardLoader(
        args.shards, "train", batch_size=args.batch_size, image_size=args.image_size, workers=args.workers
    )
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, len(loader.classes)),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    timed_images, timed_s, step = 0, 0.0, 0
    for epoch in range(args.epochs):
        started, images_seen = time.perf_counter(), 0
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            images_seen += len(labels)
            clusterdeck.log(step=step, epoch=epoch + loader.step / len(loader), loss=loss.item(), lr=0.05)
        if epoch > 0:
            timed_images, timed_s = timed_images + images_seen, timed_s + time.perf_counter() - started
    out = Path(args.out) if args.out else (task.checkpoint_dir / "bench.json")
    out.write_text(json.dumps({"images_per_s": timed_images / timed_s, "images": timed_images, "seconds": timed_s}))


if __name__ == "__main__":
    main()
