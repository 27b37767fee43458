"""Per-core sharding rate from HuggingFace parquet (and a save_to_disk directory) against the ImageFolder tree of
the same images: the cost of the second, spilling pass (``jobs.shard.spill``) that parquet's row groups need.

Generates ImageNet-sized JPEGs (bench/shard.py's tree), writes them as ``data/train-0000K-of-0000N.parquet`` in a
shuffled order with ``--row-group`` rows per row group (``datasets`` writes 100 for image sets) and as a
``save_to_disk`` directory, then shards each with one writer process (one core), keeping the original bytes;
prints images/s, MB/s, the ratio to the tree, and checks that the shards are byte for byte the tree's.

    python bench/shard_parquet.py [--images 2000] [--repeat 2] [--row-group 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from shard import make_tree, warm  # bench/shard.py (the script's directory is on sys.path)
from shard_plan import best_of, shard_once

from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.sample_hf import make_save_to_disk, train_rows, write_parquet_split
from clusterdeck.jobs.shard.parquetsource import list_parquet


def tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--row-group", type=int, default=100)
    parser.add_argument("--shard-mb", type=float, default=64.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-parquet-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        make_tree(root, args.images)
        data = SampleData(root, sorted(p.name for p in (root / "train").iterdir()))
        rows = train_rows(data)
        order = np.random.default_rng(0).permutation(len(rows))
        classes = sorted(data.wnids)
        files = write_parquet_split(root / "hf" / "data", "train", [rows[i] for i in order], classes, 4, args.row_group)
        saved = make_save_to_disk(data, root / "saved", files=2, batch=1000)
        del rows
        size = warm(root / "train")
        for f in [*files, *saved.iterdir()]:
            f.read_bytes()  # all in the page cache, as the tree is
        mb = size / 1e6
        fixed = {"shard_size_mb": args.shard_mb, "max_samples": args.images // 4}  # same cuts for every input
        inputs = {
            "imagefolder tree": {"input": str(root / "train")},
            "hf parquet": {"input": str(root / "hf"), "format": "hf-parquet", "split": "train"},
            "save_to_disk": {"input": str(saved), "format": "hf-parquet"},
        }
        times, shards = {}, {}
        for name, train in inputs.items():
            out = root / name.replace(" ", "-")
            times[name], _ = best_of(args.repeat, lambda out=out, train=train: shard_once(out, train, **fixed))
            shards[name] = tars(out)
        started = time.perf_counter()
        list_parquet(files)
        listed = time.perf_counter() - started
    same = all(shards[name] == shards["imagefolder tree"] for name in shards)
    n, tree = args.images, times["imagefolder tree"]
    print(f"{n} generated JPEGs, {size / n / 1e3:.0f} KB each; one writer process (one core); best of {args.repeat}")
    print(f"parquet: 4 files, {args.row_group} rows per row group, rows shuffled; save_to_disk: 2 Arrow files")
    for name, seconds in times.items():
        print(f"  {name:<18} {n / seconds:7.0f} images/s {mb / seconds:6.0f} MB/s   {tree / seconds:4.2f}× the tree")
    print(f"  listing the parquet files (label and image.path): {n / listed:.0f} rows/s")
    print(f"  shards byte-identical to the tree's: {same}")


if __name__ == "__main__":
    main()
