"""Per-core sharding rates for each ImageNet input shape, and the plan they give for the full train set.

Measures, with one writer process (one core), on generated ImageNet-sized JPEGs (shorter
side 200–500 px, as ILSVRC2012's are mostly) made into the train tar's shape:

- listing ``ILSVRC2012_img_train.tar`` (headers only): images listed per second;
- sharding from that tar, keeping the original bytes: images/s and MB/s;
- sharding from that tar with pre-resize (shorter side 256, JPEG quality 90): images/s;
- sharding downsampled 64×64 npz batches to lossless PNG: images/s.

Then prints, for 1,281,167 train images of --mean-kb each (ILSVRC2012_img_train.tar is about
138 GiB, 110 KB an image), --tasks array tasks of --cores writers and each --shard-mb: shard
count and size, CPU-hours, the wall time if every writer runs at the measured rate
("CPU-bound": shards are written whole by one process, in rounds; the step's 1→2 worker
scaling is measured by bench/shard.py), the wall time if the filesystem gives only --fs-gb-s
("I/O-bound": an assumption, ask your admins), and the filesystem rate the CPU-bound time needs.

    python bench/shard_plan.py [--images 2000] [--repeat 2] [--tasks 16] [--cores 8]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from shard import make_tree, warm  # bench/shard.py (the script's directory is on sys.path)

from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import SampleData, make_npz_batches, make_train_tar
from clusterdeck.jobs.shard.step import run_shard_part
from clusterdeck.jobs.shard.tarsource import list_train_tar

TRAIN_IMAGES = 1_281_167
T = TypeVar("T")


def best_of(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """The best time of ``repeat`` runs, and what the last one returned."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


def shard_once(out: Path, train: dict[str, str], **settings: Any) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    table = {"output": str(out), "shard_size_mb": 64, "workers": 1, "train": train, **settings}
    spec = validate({"name": "plan", "shard": table}).shard
    assert spec is not None
    with contextlib.redirect_stdout(io.StringIO()):
        run_shard_part(spec, "main", lambda _: None)
    index: dict[str, Any] = json.loads((out / "index.json").read_text())
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--mean-kb", type=float, default=110.0, help="mean JPEG size of the real train set")
    parser.add_argument(
        "--shard-mb",
        type=lambda text: [float(v) for v in text.split(",")],
        default=[1024.0, 128.0],
        help="shard sizes to plan for, comma-separated (shard.shard_size_mb)",
    )
    parser.add_argument("--fs-gb-s", type=float, default=5.0, help="read rate the shared filesystem gives the array")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-plan-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        make_tree(root, args.images)
        tar = make_train_tar(SampleData(root, []), root / "ILSVRC2012_img_train.tar")
        npz = make_npz_batches(root / "npz", classes=20, train_per_class=args.images // 20, side=64, batches=2)
        warm(root / "train")
        tar.read_bytes()
        mean_kb = tar.stat().st_size / args.images / 1e3
        from_tar = {"input": str(tar), "format": "ilsvrc-train-tar"}
        out = root / "out"

        listed, _ = best_of(args.repeat, lambda: list_train_tar(tar))
        kept, _ = best_of(args.repeat, lambda: shard_once(out, from_tar))
        resized, index = best_of(args.repeat, lambda: shard_once(out, from_tar, resize_shorter=256, jpeg_quality=90))
        resized_kb = index["splits"]["train"]["bytes"] / (args.images * 1e3)
        pngs, index = best_of(args.repeat, lambda: shard_once(out, {"input": str(npz.train), "format": "npz"}))
        png_kb = index["splits"]["train"]["bytes"] / (args.images * 1e3)

    n = args.images
    cores = args.tasks * args.cores
    kept_mb_s = n / kept * mean_kb / 1e3
    print(
        f"{n} generated JPEGs, {mean_kb:.0f} KB each on average; one writer process (one core); best of {args.repeat}"
    )
    print(f"  list the train tar (headers)   {n / listed:8.0f} images/s")
    print(f"  shard, original bytes          {n / kept:8.0f} images/s  {kept_mb_s:5.0f} MB/s")
    print(f"  shard, pre-resize 256 px q90   {n / resized:8.0f} images/s  ({resized_kb:.1f} KB stored per image)")
    print(f"  shard, npz 64×64 → PNG         {n / pngs:8.0f} images/s  ({png_kb:.1f} KB stored per image)")
    # Keeping bytes costs per byte (copy and sha256), so the real files' rate follows from MB/s;
    # decoding and resizing cost per pixel, and these images have ImageNet's pixel counts.
    rows = [
        ("original bytes", kept_mb_s * 1e3 / args.mean_kb, args.mean_kb, args.mean_kb),
        ("pre-resize 256 px, q90", n / resized, resized_kb, args.mean_kb),
        ("npz 64×64 → PNG", n / pngs, png_kb, 64 * 64 * 3 / 1e3),
    ]
    print()
    print(
        f"Plan: {TRAIN_IMAGES:,} train images of {args.mean_kb:.0f} KB, {args.tasks} array tasks × {args.cores} cores"
        f" = {cores} writers, a filesystem that serves {args.fs_gb_s:g} GB/s (reads and writes together)"
    )
    print(f"  listing the train tar: {TRAIN_IMAGES / (n / listed):.0f} s in each task ({TRAIN_IMAGES:,} header reads)")
    print(
        f"  {'':<24} {'shard MB':>8} {'shards':>6} {'stored':>9} {'CPU-h':>6} {'CPU-bound':>9}"
        f" {'I/O-bound':>9} {'needs':>9}"
    )
    for name, rate, stored_kb, read_kb in rows:
        for shard_mb in args.shard_mb:
            stored_gb = TRAIN_IMAGES * stored_kb / 1e6
            shards = max(1, round(stored_gb * 1e3 / shard_mb))
            # A task's writers take its shards in rounds; a shard is written by one process.
            rounds = math.ceil(math.ceil(shards / args.tasks) / args.cores)
            cpu_bound = rounds * (TRAIN_IMAGES / shards) / rate
            io_bound = TRAIN_IMAGES * (read_kb + stored_kb) / 1e6 / args.fs_gb_s
            needs = TRAIN_IMAGES * (read_kb + stored_kb) / 1e6 / cpu_bound
            print(
                f"  {name:<24} {shard_mb:8.0f} {shards:6d} {stored_gb:6.1f} GB {TRAIN_IMAGES / rate / 3600:6.1f}"
                f" {cpu_bound:7.0f} s {io_bound:7.0f} s {needs:4.1f} GB/s"
            )
    print("  wall time ≈ the larger of CPU-bound and I/O-bound, plus the listing and the jobs' start")


if __name__ == "__main__":
    main()
