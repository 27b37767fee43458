"""Sharding throughput: clusterdeck's shard step against a plain webdataset.ShardWriter loop.

Both read the same ImageFolder tree (warm in the page cache) and write shards of the same
target size to the same disk, in this one process, alternating, best of --repeat. Ours also
lists and globally permutes the dataset, hashes every shard (sha256), fsyncs it, and writes
the index; the baseline writes in directory order with no shuffle and no checksums.

    python bench/shard.py [--images 3000] [--shard-mb 4] [--repeat 3]

Prints images/s of each and the ratios ours(1 worker)/baseline and ours(2 workers)/baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
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
        contenders = {
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
        print(f"ratio ours-1/baseline: {best['baseline'] / best['ours-1']:.2f} (target >= 1.0)")
        print(f"ratio ours-2/baseline: {best['baseline'] / best['ours-2']:.2f} (target >= 1.7)")


if __name__ == "__main__":
    main()
