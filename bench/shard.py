"""Sharding throughput: clusterdeck's shard step against a webdataset loop and a byte-copy floor.

Contenders, all reading the same ImageFolder tree (warm in the page cache) and writing to the
same disk, in this one process, in a fresh random order in each of --repeat rounds (so none
always runs first, on a cold cache, or last, on a hot one), each output removed after its round:

- tar: ``tar -cf OUT.tar -C tree .`` (GNU tar, one archive, no shard cuts): the byte-copy floor;
- baseline: a plain ``webdataset.ShardWriter`` loop, shards of --shard-mb, in directory order,
  no shuffle, no checksums;
- ours-1, ours-2: ``jobs.shard.step.run_shard_part`` with 1 and 2 workers, which also lists
  and globally permutes the dataset, hashes every shard (sha256) and writes the index.

    python bench/shard.py [--images 3000] [--shard-mb 4] [--repeat 3] [--seed 0]

(``BENCH_DIR`` picks the disk for the tree and the outputs; default the system temp dir.)
Each contender's count is of the samples it wrote (image members in its output tars, read back),
not of the JPEGs it was given. Prints the median samples/s and MB/s of each, then the median
over the rounds of each round's speed ratio: ours/baseline (targets >= 1.0 and >= 1.7),
ours/tar (the share of the byte-copy floor reached, below 1) and ours-2/ours-1 (the scaling
from 1 to 2 workers, ideal 2.0 on 2 free cores).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from clusterdeck.jobs.sample_data import make_sample_data


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


def samples_written(out: Path) -> int:
    """The images in every tar under ``out``, read back from the archives: what a contender wrote."""
    count = 0
    for path in out.rglob("*.tar"):
        with tarfile.open(path) as archive:
            count += sum(1 for m in archive if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg")))
    return count


def tar(tree: Path, out: Path) -> None:
    """The byte-copy floor: GNU tar of the whole tree into one archive under ``out``."""
    out.mkdir()
    subprocess.run(["tar", "-cf", str(out / "all.tar"), "-C", str(tree), "."], check=True)


def baseline(tree: Path, out: Path, shard_mb: float) -> None:
    import webdataset as wds

    out.mkdir()
    classes = sorted(p.name for p in tree.iterdir())
    count = 0
    with wds.ShardWriter(str(out / "train-%06d.tar"), maxsize=int(shard_mb * 1e6), maxcount=10**9, verbose=0) as sink:
        for index, wnid in enumerate(classes):
            for path in sorted((tree / wnid).iterdir()):
                sink.write({"__key__": f"{wnid}_{count:08d}", "jpg": path.read_bytes(), "cls": index})
                count += 1


def ours(tree: Path, out: Path, shard_mb: float, workers: int) -> None:
    from clusterdeck.jobs.runspec import validate
    from clusterdeck.jobs.shard.step import run_shard_part

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--shard-mb", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the rounds' random orders")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shard-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        tree = make_tree(root, args.images)
        size = warm(tree)
        print(f"{args.images} images, {size / 1e6:.0f} MB, shards of {args.shard_mb} MB, {os.cpu_count()} cores")
        contenders: dict[str, Callable[[Path], None]] = {
            "tar": lambda out: tar(tree, out),
            "baseline": lambda out: baseline(tree, out, args.shard_mb),
            "ours-1": lambda out: ours(tree, out, args.shard_mb, 1),
            "ours-2": lambda out: ours(tree, out, args.shard_mb, 2),
        }
        import webdataset  # noqa: F401

        import clusterdeck.jobs.shard.step  # noqa: F401  (imports are not what is timed)

        times: dict[str, list[float]] = {name: [] for name in contenders}
        rng = random.Random(args.seed)
        for trial in range(args.repeat):
            order = rng.sample(list(contenders), len(contenders))
            for name in order:
                out = root / f"out-{name}-{trial}"
                started = time.perf_counter()
                contenders[name](out)
                times[name].append(time.perf_counter() - started)
                written = samples_written(out)
                assert written == args.images, (name, written)
                shutil.rmtree(out)
            print(f"round {trial + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in order))
        for name, seconds in times.items():
            median = statistics.median(seconds)
            print(f"{name:<9} {args.images / median:8.0f} samples/s  {size / 1e6 / median:7.0f} MB/s  (median)")

        def speed(a: str, b: str) -> float:
            """The median over the rounds of a's speed over b's in that round."""
            return statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))

        ratios = [
            ("ours-1 / baseline", speed("ours-1", "baseline"), "target >= 1.0"),
            ("ours-2 / baseline", speed("ours-2", "baseline"), "target >= 1.7"),
            ("ours-1 / tar", speed("ours-1", "tar"), "fraction of the byte-copy floor"),
            ("ours-2 / tar", speed("ours-2", "tar"), "fraction of the byte-copy floor"),
            ("scaling 1→2 workers", speed("ours-2", "ours-1"), "ours-2 / ours-1, ideal 2.0 on 2 free cores"),
        ]
        for label, value, note in ratios:
            print(f"{label:<20} {value:5.2f}  ({note}; median of {args.repeat} rounds' ratios)")


if __name__ == "__main__":
    main()
