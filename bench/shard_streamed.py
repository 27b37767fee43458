"""Per-core sharding rates of a tar of class folders, plain and compressed, against the extracted tree.

The same generated ImageNet-sized JPEGs (bench/shard.py's ``make_tree``: shorter side 200–500 px) are
sharded, keeping their bytes, with one writer process (one core), from:

- the ImageFolder tree (one pass: each image read where it lies) — the baseline;
- a plain ``.tar`` of it (``imagefolder-tar``, read in place by offset);
- a ``.tar.gz`` and a ``.tar.zst`` of it: the two-pass path (listing by one streaming pass, a spill of every
  sample into buckets by a second, the shards written from the buckets), each time from nothing (no cached
  listing).

For each: images/s and MB/s of images, and the ratio of its time to the tree's (the overhead of reading the
archive, for the compressed ones both passes and the spill). One streaming pass alone is timed too: the
listing's cost, and the floor of the spill's reading.

    python bench/shard_streamed.py [--images 2000] [--repeat 2] [--gzip-level 6]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from shard import make_tree, warm  # bench/shard.py (the script's directory is on sys.path)
from shard_plan import best_of, shard_once

from clusterdeck.jobs.sample_imagefolder_tar import make_imagefolder_tar
from clusterdeck.jobs.shard.tarstream import walk


def stream_once(archive: Path) -> int:
    """One streaming pass that reads every member's bytes, as the spill does: the bytes read."""
    total = 0
    for _, member, tar in walk(archive):
        handle = tar.extractfile(member)
        assert handle is not None
        total += len(handle.read())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--gzip-level", type=int, default=6, help="gzip's default, as downloads are made")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-streamed-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        tree = make_tree(root, args.images)
        image_bytes = warm(tree)
        archives = {
            ".tar": make_imagefolder_tar(tree, root / "train.tar"),
            ".tar.gz": make_imagefolder_tar(tree, root / "train.tar.gz", "train", level=args.gzip_level),
            ".tar.zst": make_imagefolder_tar(tree, root / "train.tar.zst", "train"),
        }
        sizes = {kind: len(archive.read_bytes()) for kind, archive in archives.items()}  # cached, as the tree is
        out = root / "out"

        def from_archive(archive: Path) -> float:
            def run() -> dict:
                shutil.rmtree(out, ignore_errors=True)  # the cached listing too: both passes every time
                return shard_once(out, {"input": str(archive), "format": "imagefolder-tar"})

            seconds, _ = best_of(args.repeat, run)
            return seconds

        rows = [("ImageFolder tree (baseline)", best_of(args.repeat, lambda: shard_once(out, {"input": str(tree)}))[0])]
        rows += [(f"imagefolder-tar {kind}", from_archive(archive)) for kind, archive in archives.items()]
        passes = {
            kind: best_of(args.repeat, lambda a=a: stream_once(a))[0] for kind, a in archives.items() if kind != ".tar"
        }

    n, mb = args.images, image_bytes / 1e6
    print(f"{n} generated JPEGs, {mb / n * 1e3:.0f} KB each on average; one writer (one core); best of {args.repeat}")
    print("  archives: " + ", ".join(f"{kind} {size / 1e6:.1f} MB" for kind, size in sizes.items()))
    baseline = rows[0][1]
    print(f"  {'input':<30} {'images/s':>9} {'MB/s':>7} {'time / tree':>12}")
    for name, seconds in rows:
        print(f"  {name:<30} {n / seconds:9.0f} {mb / seconds:7.0f} {seconds / baseline:11.2f}×")
    for kind, seconds in passes.items():
        print(
            f"  one streaming pass, {kind:<9}      {n / seconds:9.0f} {mb / seconds:7.0f}   (listing; the spill's read)"
        )


if __name__ == "__main__":
    main()
