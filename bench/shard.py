"""Sharding throughput: clusterdeck's shard step against a webdataset loop and a byte-copy floor.

Contenders, all reading the same ImageFolder tree (warm in the page cache) and writing to the
same disk, in this one process, alternating within each trial, best of --repeat, each output
removed after its trial:

- tar: ``tar -cf OUT.tar -C tree .`` (GNU tar, one archive, no shard cuts): the byte-copy floor;
- baseline: a plain ``webdataset.ShardWriter`` loop, shards of --shard-mb, in directory order,
  no shuffle, no checksums;
- ours-1, ours-2: ``jobs.shard.step.run_shard_part`` with 1 and 2 workers, which also lists
  and globally permutes the dataset, hashes every shard (sha256) and writes the index.

    python bench/shard.py [--images 3000] [--shard-mb 4] [--repeat 3]

(``BENCH_DIR`` picks the disk for the tree and the outputs; default the system temp dir.)
Prints images/s and MB/s of each, then the speed ratios: ours/baseline (targets >= 1.0 and
>= 1.7), ours/tar (the share of the byte-copy floor reached, below 1) and ours-2/ours-1 (the
scaling from 1 to 2 workers, ideal 2.0 on 2 free cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jobs.sample_data import make_sample_data


def make_tree(root: Path, images: int, classes: int = 20) -> Path:
    """``images`` JPEGs in ``classes`` folders: a fifth generated, the rest byte-copies under new names."""
    distinct = max(classes, images // 5)
    data = make_sample_data(root / "gen", classes=classes, train_per_class=distinct // classes, val_per_class=1)
    tree = root / "train"
    for wnid_dir in sorted(data.train.iterdir()):
        target = tree / wnid_dir.name
        target.mkdir(parents=True)
        sources = sorted(wnid_dir.iterdir())
        for k in range(images // classes):
            shutil.copyfile(sources[k % len(sources)], target / f"{wnid_dir.name}_{k}.JPEG")
    return tree


def warm(tree: Path) -> int:
    return sum(len(p.read_bytes()) for p in tree.rglob("*.JPEG"))


def tar(tree: Path, out: Path) -> int:
    """The byte-copy floor: GNU tar of the whole tree into one archive under ``out``."""
    out.mkdir()
    subprocess.run(["tar", "-cf", str(out / "all.tar"), "-C", str(tree), "."], check=True)
    return sum(1 for _ in tree.rglob("*.JPEG"))


def baseline(tree: Path, out: Path, shard_mb: float) -> int:
    import webdataset as wds

    out.mkdir()
    classes = sorted(p.name for p in tree.iterdir())
    count = 0
    with wds.ShardWriter(str(out / "train-%06d.tar"), maxsize=int(shard_mb * 1e6), maxcount=10**9, verbose=0) as sink:
        for index, wnid in enumerate(classes):
            for path in sorted((tree / wnid).iterdir()):
                sink.write({"__key__": f"{wnid}_{count:08d}", "jpg": path.read_bytes(), "cls": index})
                count += 1
    return count


def ours(tree: Path, out: Path, shard_mb: float, workers: int) -> int:
    from jobs.shard.step import run_shard_part
    from jobs.spec import validate

    spec = validate(
        {
            "name": "bench",
            "shard": {"output": str(out), "shard_size_mb": shard_mb, "workers": workers, "train": {"input": str(tree)}},
        }
    ).shard
    assert spec is not None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        run_shard_part(spec, "main", lambda _: None)
    return sum(1 for _ in tree.rglob("*.JPEG"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--shard-mb", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shard-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        tree = make_tree(root, args.images)
        size = warm(tree)
        print(f"{args.images} images, {size / 1e6:.0f} MB, shards of {args.shard_mb} MB, {os.cpu_count()} cores")
        contenders: dict[str, Callable[[Path], int]] = {
            "tar": lambda out: tar(tree, out),
            "baseline": lambda out: baseline(tree, out, args.shard_mb),
            "ours-1": lambda out: ours(tree, out, args.shard_mb, 1),
            "ours-2": lambda out: ours(tree, out, args.shard_mb, 2),
        }
        best = {name: float("inf") for name in contenders}
        for trial in range(args.repeat):
            for name, run in contenders.items():
                out = root / f"out-{name}-{trial}"
                started = time.perf_counter()
                count = run(out)
                best[name] = min(best[name], time.perf_counter() - started)
                assert count == args.images, (name, count)
                shutil.rmtree(out)
        for name, seconds in best.items():
            print(f"{name:<9} {args.images / seconds:8.0f} images/s  {size / 1e6 / seconds:7.0f} MB/s")

        def speed(a: str, b: str) -> float:
            return best[b] / best[a]

        ratios = [
            ("ours-1 / baseline", speed("ours-1", "baseline"), "target >= 1.0"),
            ("ours-2 / baseline", speed("ours-2", "baseline"), "target >= 1.7"),
            ("ours-1 / tar", speed("ours-1", "tar"), "fraction of the byte-copy floor"),
            ("ours-2 / tar", speed("ours-2", "tar"), "fraction of the byte-copy floor"),
            ("scaling 1→2 workers", speed("ours-2", "ours-1"), "ours-2 / ours-1, ideal 2.0 on 2 free cores"),
        ]
        for label, value, note in ratios:
            print(f"{label:<20} {value:5.2f}  ({note})")


if __name__ == "__main__":
    main()
