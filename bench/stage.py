"""Staging throughput: `clusterdeck stage` (verified, parallel) against `cp -r` of the same shards,
and against `cp -r` of the ImageFolder tree the shards were made from (one file per image).

One run builds an ImageFolder tree of ImageNet-sized JPEGs (about 110 KB each; a pool of
distinct images copied under new names), shards it with the shard step, then times, in
rotating order, --repeat rounds:

- ``cp``     ``cp -r SHARDS DEST``: the byte-copy floor, no checks;
- ``stage``  ``clusterdeck stage SHARDS --to DEST``: the stager, 4 streams of 16 MiB reads,
             sha256 of every byte against the index, temporary name + rename, locks;
- ``tree``   ``cp -r TREE DEST``: what staging an unsharded dataset costs, file by file.

Each copy is a process of its own, timed from its start (the CLI's interpreter start and
imports included, as cp's exec is) to the end of a ``sync``, so what was written is on disk, and the page
cache is dropped before each one (as root; otherwise the source is warm and it says so).
The ratios are medians over rounds of one copy each, as the disk of a shared VM varies.

    python bench/stage.py [--gb 2.2] [--shard-mb 100] [--repeat 5] [--streams 4]

Prints each copy's time, the best MB/s, and the ratios stage/cp (target >= 0.8) and stage/tree.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from shard import ours as shard  # bench/shard.py: the shard step, quietly

REPO = Path(__file__).resolve().parent.parent


def jpeg(rng: np.random.Generator) -> bytes:
    """A 450-560 px JPEG of grain at quality 90: 85-150 KB, about the size of an ImageNet train image."""
    w = int(rng.integers(450, 561))
    h = int(w * rng.uniform(0.66, 0.8))
    pixels = rng.normal(128, rng.uniform(18, 40), (h, w, 3)).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_tree(root: Path, gb: float, classes: int = 100, distinct: int = 300) -> tuple[int, int]:
    """An ImageFolder tree of at least ``gb`` GB; returns (files, bytes)."""
    rng = np.random.default_rng(0)
    pool = [jpeg(rng) for _ in range(distinct)]
    files = size = 0
    while size < gb * 1e9:
        data = pool[files % distinct]
        folder = root / f"n{files % classes:08d}"
        if files < classes:
            folder.mkdir(parents=True)
        (folder / f"img_{files:08d}.JPEG").write_bytes(data)
        files += 1
        size += len(data)
    return files, size


def drop_caches() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def timed(copy: object, dest: Path) -> float:
    assert callable(copy)
    started = time.perf_counter()
    copy(dest)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.2)
    parser.add_argument("--shard-mb", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-stage-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        files, size = make_tree(root / "tree", args.gb)
        shard(root / "tree", root / "shards", args.shard_mb, workers=2)
        shard_bytes = sum(p.stat().st_size for p in (root / "shards").glob("*.tar"))
        shards = len(list((root / "shards").glob("*.tar")))
        print(
            f"tree: {files} files, {size / 1e9:.2f} GB ({size / files / 1e3:.0f} KB each); "
            f"{shards} shards, {shard_bytes / 1e9:.2f} GB; {os.cpu_count()} cores, {args.streams} streams"
        )

        def stage(dest: Path) -> None:
            """The stager as cp is run: a process of its own (the CLI's), not a call in this one."""
            command = [sys.executable, "-m", "clusterdeck.app.cli", "stage", str(root / "shards"), "--to", str(dest)]
            command += ["--streams", str(args.streams), "--json"]
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
            tally = json.loads(done.stdout)
            assert tally["copied"] == shards, tally

        contenders = {
            "cp": (lambda dest: subprocess.run(["cp", "-r", str(root / "shards"), str(dest)], check=True), shard_bytes),
            "stage": (stage, shard_bytes),
            "tree": (lambda dest: subprocess.run(["cp", "-r", str(root / "tree"), str(dest)], check=True), size),
        }
        names = list(contenders)
        times: dict[str, list[float]] = {name: [] for name in names}
        cold = True
        for trial in range(args.repeat):
            for name in names[trial % 3 :] + names[: trial % 3]:
                dest = root / f"dest-{name}"
                cold = drop_caches() and cold
                times[name].append(timed(contenders[name][0], dest))
                shutil.rmtree(dest)
        print(f"page cache {'dropped before each copy' if cold else 'NOT dropped (not root): sources were warm'}")
        for name in names:
            each = ", ".join(f"{t:.2f}" for t in times[name])
            print(f"{name:<6} {contenders[name][1] / 1e6 / min(times[name]):8.0f} MB/s best  ({each} s)")
        # The disk of a shared VM swings by 2x from one copy to the next: each round's ratio compares
        # copies made seconds apart, and the median of the rounds is the figure.
        per_gb = {name: [t / contenders[name][1] for t in times[name]] for name in names}
        vs_cp = sorted(c / s for c, s in zip(per_gb["cp"], per_gb["stage"], strict=True))
        vs_tree = sorted(t / s for t, s in zip(per_gb["tree"], per_gb["stage"], strict=True))
        print(
            f"ratio stage/cp:   {statistics.median(vs_cp):.2f} median of {args.repeat} rounds "
            f"({vs_cp[0]:.2f}-{vs_cp[-1]:.2f}; target >= 0.8)"
        )
        print(
            f"ratio stage/tree: {statistics.median(vs_tree):.2f} median ({vs_tree[0]:.2f}-{vs_tree[-1]:.2f}; "
            "MB/s, shards vs one file per image)"
        )


if __name__ == "__main__":
    main()
