"""Cost of the telemetry sampler: training images/s with it running and without, in one process.

Real training on CPU: a ResNet-18 over a small shard set through the real loader (one worker
process, so the sampler walks a child as it does in a job), one intra-op thread, so the two
cores are the trainer's and the worker's and the sampler has to take its time from them.
Rounds of one epoch alternate, sampler on and off, in pairs ordered on/off then off/on so a
drift of the machine cancels; a ratio is the median of the pairs' on/off ratios.

At the default interval (1 s) the sampler's cost is far below how much one epoch's speed
varies on a shared 2-core VM (±10 %), so the same pairs are also run at shorter intervals,
where the cost is large enough to measure. One sample costs (1 - ratio) × the seconds of the
epochs with the sampler / the samples taken (its wait plus its work makes the real interval
longer than asked); at 1 s, its share of training time is that cost divided by 1 s.
The sampler's own CPU time per sample is printed too.

    python bench/telemetry.py [--pairs 5] [--intervals 1,0.05,0.01] [--per-class 60] [--batch 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from shard import ours as shard  # bench/shard.py: the shard step, quietly

from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import make_sample_data
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.telemetry.sampler import Sampler
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.loop import Job, Trainer
from clusterdeck.jobs.train.shardset import train_inputs


def one_epoch(job: Job, sampler: Sampler | None) -> tuple[float, float]:
    """(images per second, seconds) of one epoch, the sampler running throughout when given."""
    trainer = Trainer(job)
    with contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        with sampler or contextlib.nullcontext():
            trainer.train_one_epoch()
        seconds = time.perf_counter() - started
    trainer.close()
    return trainer.steps * job.cfg.batch_size / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="pairs of epochs (one with, one without) per interval")
    parser.add_argument("--intervals", default="1,0.05,0.01", help="sampler intervals in seconds, the first as used")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    intervals = [float(x) for x in args.intervals.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_sample_data(root / "data", args.classes, args.per_class, 1, seed=0)
        shard(data.train, root / "shards", 1.0, workers=2)
        train_table = {
            "train_shards": str(root / "shards"),
            "model": "resnet18",
            "image_size": args.image_size,
            "batch_size": args.batch,
            "amp": "off",
            "channels_last": False,
            "workers": 1,
            "log_every_steps": 5,
            "checkpoint_every_min": 60,
        }
        spec = validate({"name": "bench-telemetry", "train": train_table})
        assert spec.train is not None
        classes, train, _ = train_inputs(spec)
        pipeline = Pipeline()
        job = Job(
            cfg=spec.train,
            classes=classes,
            train_shards=train,
            val_shards=[],
            checkpoint_dir=root / "checkpoints",
            metrics=MetricsWriter(root / "metrics.jsonl"),
            dist=Dist(0, 1, 0, torch.device("cpu")),
            pipeline=pipeline,
        )

        def sampler(interval: float) -> Sampler:
            writer = MetricsWriter(root / "telemetry.jsonl")
            return Sampler(writer, pipeline, interval=interval, node_wide=True)

        print(
            f"resnet18, {args.image_size} px, batch {args.batch}, {sum(s.samples for s in train)} images an epoch, "
            "1 loader worker, 1 thread"
        )
        one_epoch(job, None)  # warm-up: allocator, kernels, page cache
        per_sample: list[float] = []
        measured: list[float] = []
        for interval in intervals:
            ratios, cost_s, samples, on_s = [], 0.0, 0, 0.0
            for r in range(args.pairs):
                rates = {}
                for on in (True, False) if r % 2 == 0 else (False, True):
                    s = sampler(interval) if on else None
                    rates[on], seconds = one_epoch(job, s)
                    if s is not None:
                        cost_s, samples, on_s = cost_s + s.cost_s, samples + s.samples, on_s + seconds
                ratios.append(rates[True] / rates[False])
            ratio = statistics.median(ratios)
            lost = (1 - ratio) * on_s / max(samples, 1)  # training seconds each sample cost
            per_sample.append(lost)
            measured.append(ratio)
            print(
                f"every {interval:g} s: images/s with / without the sampler {ratio:.4f} (median of {args.pairs} "
                f"pairs; pairs {min(ratios):.3f}-{max(ratios):.3f}); {samples} samples, "
                f"{cost_s / max(samples, 1) * 1e3:.2f} ms CPU each; "
                f"{lost * 1e3:.2f} ms of training each"
            )
    cost, first = per_sample[-1], measured[0]
    print(
        f"sampler overhead at {intervals[0]:g} s: measured ratio {first:.4f} (inside this machine's noise); "
        f"from the shortest interval, {cost * 1e3:.2f} ms a sample = {cost / intervals[0]:.3%} of training time"
    )


if __name__ == "__main__":
    main()
