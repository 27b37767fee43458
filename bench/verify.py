"""Verification throughput as a user meets it: the `clusterdeck inspect SHARDS` process against
`cat SHARDS/*.tar > /dev/null`, both cold.

One run builds an ImageFolder tree of ImageNet-sized JPEGs, shards it (--shard-mb) with the shard step, deletes
the tree, then times --repeat rounds in alternating order of:

- ``cat``      ``cat SHARDS/*.tar > /dev/null``: one process reading every byte once, in order;
- ``inspect``  ``clusterdeck inspect SHARDS --json``: every shard's size and xxh3-128 against the index, read by
               a pool of threads, and the image sizes of a sample of members.

Each is a process of its own, timed from its start to its end, with the page cache dropped before each
(as root; otherwise both read warm and it says so). A ratio is taken within a round (cat's time over inspect's)
and the median of the rounds is the figure: target >= 0.66.

    python bench/verify.py [--gb 2.2] [--shard-mb 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stage import REPO, drop_caches, make_shards, make_tree  # bench/stage.py: the same data


def timed(command: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.2)
    parser.add_argument("--shard-mb", type=float, default=256.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inspect-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        make_tree(root / "tree", args.gb)
        shards, size = make_shards(root / "tree", root / "shards", args.shard_mb)
        shutil.rmtree(root / "tree")
        tars = sorted(str(p) for p in (root / "shards").glob("*.tar"))
        print(f"{shards} shards of {args.shard_mb:g} MB, {size / 1e9:.2f} GB; {os.cpu_count()} cores")
        inspect = [sys.executable, "-m", "clusterdeck.app.cli", "inspect", str(root / "shards"), "--json"]
        report = json.loads(subprocess.run(inspect, cwd=REPO, capture_output=True, text=True, check=True).stdout)
        assert report["ok"] and report["verify"]["checksum"] == "xxh3_128", report["verify"]
        times: dict[str, list[float]] = {"cat": [], "inspect": []}
        cold = True
        for trial in range(args.repeat):
            for name in ["cat", "inspect"][:: 1 if trial % 2 == 0 else -1]:
                cold = drop_caches() and cold
                if name == "cat":
                    times[name].append(timed(["sh", "-c", 'cat "$@" > /dev/null', "cat", *tars]))
                else:
                    times[name].append(timed(inspect, cwd=REPO, stdout=subprocess.DEVNULL))
        print(f"page cache {'dropped before each read' if cold else 'NOT dropped (not root): reads were warm'}")
        for name, each in times.items():
            print(f"  {name:<8} {size / 1e6 / min(each):6.0f} MB/s best  ({', '.join(f'{t:.2f}' for t in each)} s)")
        ratios = sorted(c / i for c, i in zip(times["cat"], times["inspect"], strict=True))
        print(
            f"  ratio inspect/cat (speed): {statistics.median(ratios):.2f} median of {args.repeat} rounds "
            f"({ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 0.66)"
        )


if __name__ == "__main__":
    main()
