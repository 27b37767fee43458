"""Staging throughput as a user meets it: the `clusterdeck stage` process against `cp -r` and `rsync -a`.

One run builds an ImageFolder tree of ImageNet-sized JPEGs (about 110 KB each; a pool of
distinct images copied under new names), shards it with the shard step at each --shard-mb size
(default 64, 256 and 1024 MB), then, for each size, times --repeat rounds in rotating order of:

- ``cp``     ``cp -r SHARDS DEST``: the byte-copy floor, no checks;
- ``rsync``  ``rsync -a SHARDS DEST`` (when rsync is installed);
- ``stage``  ``clusterdeck stage SHARDS --to DEST``: the stager, --streams parallel copies (by default the CLI's
             own default), each shard copied in the kernel and its xxh3-128 read back and checked against
             the index, temporary name + rename, locks;
- ``tree``   with --tree: ``cp -r TREE DEST``, what staging an unsharded dataset costs, file by file.

Each copy is a process of its own, timed from its start (the CLI's interpreter start and
imports included, as cp's exec is) to the end of a ``sync``, so what was written is on disk, and the page
cache is dropped before each one (as root; otherwise the source is warm and it says so).
A ratio is taken within a round (copies seconds apart, as the disk of a shared VM swings 2x) and the
median of the rounds is the figure.

    python bench/stage.py [--gb 2.2] [--shard-mb 64 256 1024] [--repeat 5] [--streams N] [--tree]

Prints each copy's time, the best MB/s, and per size the ratios stage/cp (target >= 1.0 at 256 MB) and
stage/rsync.
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


def make_shards(tree: Path, out: Path, shard_mb: float) -> tuple[int, int]:
    """The shard step's output for ``tree`` at ``shard_mb``; returns (shards, bytes)."""
    shard(tree, out, shard_mb, workers=2)
    tars = list(out.glob("*.tar"))
    return len(tars), sum(p.stat().st_size for p in tars)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.2)
    parser.add_argument("--shard-mb", type=float, nargs="+", default=[64.0, 256.0, 1024.0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--streams", type=int, default=0, help="stage --streams (default: the CLI's default)")
    parser.add_argument("--tree", action="store_true", help="also time cp -r of the JPEG tree")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-stage-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        files, size = make_tree(root / "tree", args.gb)
        print(f"tree: {files} files, {size / 1e9:.2f} GB ({size / files / 1e3:.0f} KB each); {os.cpu_count()} cores")
        for shard_mb in args.shard_mb:
            shards_dir = root / f"shards-{shard_mb:g}"
            shards, shard_bytes = make_shards(root / "tree", shards_dir, shard_mb)
            print(f"\n{shard_mb:g} MB shards: {shards} shards, {shard_bytes / 1e9:.2f} GB")
            rounds(root, shards_dir, shards, shard_bytes, size, args)
            shutil.rmtree(shards_dir)


def rounds(
    root: Path, shards_dir: Path, shards: int, shard_bytes: int, tree_bytes: int, args: argparse.Namespace
) -> None:
    def stage(dest: Path) -> None:
        """The stager as cp is run: a process of its own (the CLI's), not a call in this one."""
        command = [sys.executable, "-m", "clusterdeck.app.cli", "stage", str(shards_dir), "--to", str(dest), "--json"]
        command += ["--streams", str(args.streams)] if args.streams else []
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
        tally = json.loads(done.stdout)
        assert tally["copied"] == shards, tally

    def program(*argv: str, source: Path = shards_dir) -> object:
        return lambda dest: subprocess.run([*argv, str(source), str(dest)], check=True)

    contenders: dict[str, tuple[object, int]] = {"cp": (program("cp", "-r"), shard_bytes)}
    if shutil.which("rsync"):
        contenders["rsync"] = (program("rsync", "-a"), shard_bytes)
    contenders["stage"] = (stage, shard_bytes)
    if args.tree:
        contenders["tree"] = (program("cp", "-r", source=root / "tree"), tree_bytes)
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    cold = True
    for trial in range(args.repeat):
        k = trial % len(names)
        for name in names[k:] + names[:k]:
            dest = root / f"dest-{name}"
            cold = drop_caches() and cold
            times[name].append(timed(contenders[name][0], dest))
            shutil.rmtree(dest)
    print(f"page cache {'dropped before each copy' if cold else 'NOT dropped (not root): sources were warm'}")
    for name in names:
        each = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:<6} {contenders[name][1] / 1e6 / min(times[name]):8.0f} MB/s best  ({each} s)")
    per_byte = {name: [t / contenders[name][1] for t in times[name]] for name in names}
    for other in [n for n in names if n != "stage"]:
        ratios = sorted(o / s for o, s in zip(per_byte[other], per_byte["stage"], strict=True))
        target = "; target >= 1.0 at 256 MB" if other == "cp" else ""
        print(
            f"  ratio stage/{other}: {statistics.median(ratios):.2f} median of {args.repeat} rounds "
            f"({ratios[0]:.2f}-{ratios[-1]:.2f}{target})"
        )


if __name__ == "__main__":
    main()
