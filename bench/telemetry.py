"""Cost of the telemetry sampler: training images/s with it running and without, in one process.

Real training on CPU: a ResNet-18 over a small shard set through the real loader (one worker
process, so the sampler walks a child as it does in a job), one intra-op thread, so the two
cores are the trainer's and the worker's and the sampler has to take its time from them.
Rounds of one epoch alternate, sampler on and off, in pairs ordered on/off then off/on so a
drift of the machine cancels; the ratio printed is the median of the pairs' on/off ratios.
Two ratios: images per wall second, and images per CPU second of the trainer and its worker
(what the sampler takes shows there whatever else the VM does; wall time on a shared 2-core
VM swings by 10 % between rounds). The sampler's own CPU time per sample is printed too.

    python bench/telemetry.py [--rounds 6] [--interval 1.0] [--per-class 60] [--batch 32] [--image-size 64]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from jobs.metrics import MetricsWriter
from jobs.sample_data import make_sample_data
from jobs.shard.step import run_shard_part
from jobs.spec import validate
from jobs.telemetry.pipeline import Pipeline
from jobs.telemetry.sampler import Sampler
from jobs.train.distributed import Dist
from jobs.train.loop import Job, Trainer
from jobs.train.shardset import train_inputs


def one_epoch(job: Job, sampler: Sampler | None) -> tuple[float, float]:
    """(images per wall second, images per CPU second of the trainer and its loader worker)."""
    trainer = Trainer(job)
    with contextlib.redirect_stdout(io.StringIO()):
        cpu, started = _cpu_s(), time.perf_counter()
        with sampler or contextlib.nullcontext():
            trainer.train_one_epoch()
        seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
    images = trainer.steps * job.cfg.batch_size
    return images / seconds, images / cpu


def _cpu_s() -> float:
    t = os.times()  # the worker has been joined and reaped at the epoch's end: its time is in children_*
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="pairs of epochs (one with, one without)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_sample_data(root / "data", args.classes, args.per_class, 1, seed=0)
        table = {
            "name": "bench-telemetry",
            "shard": {
                "output": str(root / "shards"),
                "shard_size_mb": 1,
                "workers": 2,
                "train": {"input": str(data.train), "format": "imagefolder"},
            },
        }
        spec = validate(table)
        assert spec.shard is not None
        run_shard_part(spec.shard, "main", lambda progress: None)
        table["train"] = {
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
        spec = validate(table)
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

        def sampler() -> Sampler:
            writer = MetricsWriter(root / "telemetry.jsonl")
            return Sampler(writer, pipeline, interval=args.interval, node_wide=True)

        print(
            f"resnet18, {args.image_size} px, batch {args.batch}, {sum(s.samples for s in train)} images an epoch, "
            f"1 loader worker, 1 thread; sampler every {args.interval:g} s"
        )
        one_epoch(job, None)  # warm-up: allocator, kernels, page cache
        wall, cpu, cost_s, samples = [], [], 0.0, 0
        for r in range(args.rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            rates = {}
            for on in order:
                s = sampler() if on else None
                rates[on] = one_epoch(job, s)
                if s is not None:
                    cost_s, samples = cost_s + s.cost_s, samples + s.samples
            wall.append(rates[True][0] / rates[False][0])
            cpu.append(rates[True][1] / rates[False][1])
            print(
                f"pair {r + 1}: with {rates[True][0]:.1f} img/s ({rates[True][1]:.2f} img/CPU-s), "
                f"without {rates[False][0]:.1f} img/s ({rates[False][1]:.2f} img/CPU-s); "
                f"ratios {wall[-1]:.4f} wall, {cpu[-1]:.4f} CPU"
            )
    per_sample = cost_s / max(samples, 1)
    print(
        f"sampler: {samples} samples, {per_sample * 1e3:.2f} ms CPU each = {per_sample / args.interval:.3%} of a core"
    )
    print(f"images per CPU-s with / without the sampler: {statistics.median(cpu):.4f} (median of {args.rounds} pairs)")
    print(f"images/s with / without the sampler: {statistics.median(wall):.4f} (median of {args.rounds} pairs)")


if __name__ == "__main__":
    main()
