"""The shard plan at ImageNet-21K-P scale, without pixels: a synthetic listing of 13 million entries over 11,000
classes (names as an ImageFolder tree gives them), labelled, sized, permuted and cut into shards as the shard step
does (``jobs.shard.step.build_plan``'s calls), and the index those shards make, written to disk.

    python bench/plan_scale.py [--entries 13000000] [--classes 11000] [--shard-mb 1024] [--mean-kb 108]

Prints the seconds of each stage, the peak RSS of the whole process (targets: < 60 s on one core, < 2 GB), the
shard count and the index's size. Run it as its own process: the peak RSS is the process's.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from clusterdeck.jobs.shard.encode import Encoder
from clusterdeck.jobs.shard.plan import plan_split, sample_bytes, samples_per_shard
from clusterdeck.jobs.shard.sources import Entries, labelled


@dataclass(frozen=True)
class Sized:
    """No files: every sample is ``mean`` bytes, give or take a fixed pattern."""

    mean: int

    def read(self, loc: str) -> bytes:
        raise OSError("a synthetic listing has no pixels")

    def raw_size(self, loc: str) -> int:
        return self.mean + (hash(loc) % 2001) - 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=13_000_000)
    parser.add_argument("--classes", type=int, default=11_000)
    parser.add_argument("--shard-mb", type=float, default=1024)
    parser.add_argument("--mean-kb", type=float, default=108)
    args = parser.parse_args()
    t0 = time.perf_counter()
    wnids = [f"n{10000000 + 937 * c:08d}" for c in range(args.classes)]
    entries = Entries(Sized(int(args.mean_kb * 1000)), [], [], [], wnids)
    per_class, extra = divmod(args.entries, args.classes)
    for c, wnid in enumerate(wnids):
        for k in range(per_class + (c < extra)):
            name = f"{wnid}/{wnid}_{k}.JPEG"
            entries.add(name, name, wnid)
    t1 = time.perf_counter()
    listing = labelled(entries, wnids)
    del entries
    t2 = time.perf_counter()
    mean = sample_bytes(listing, listing.source.raw_size, seed=0)
    per_shard = samples_per_shard(mean, args.shard_mb, None)
    jobs = plan_split("train", listing, per_shard, 0, Encoder())
    t3 = time.perf_counter()
    index = {
        "classes": wnids,
        "splits": {
            "train": {
                "samples": len(listing),
                "shards": [
                    {"name": j.name, "file": f"{j.name}.tar", "samples": len(j.indices),
                     "bytes": int(len(j.indices) * mean), "sha256": "0" * 64}
                    for j in jobs
                ],
            }
        },
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.json"
        path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        index_bytes = path.stat().st_size
    t4 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"listing {t1 - t0:.1f} s, labels {t2 - t1:.1f} s, size+permute+cut {t3 - t2:.1f} s, index {t4 - t3:.1f} s")
    print(f"entries {len(listing):,} over {args.classes:,} classes: {len(jobs):,} shards of {per_shard:,} samples")
    print(f"plan (labels, permutation, shards, index) {t4 - t1:.1f} s (target < 60 s); "
          f"with the synthetic listing {t4 - t0:.1f} s")  # fmt: skip
    print(f"peak RSS {peak_mb:,.0f} MB (target < 2048 MB); index.json {index_bytes / 1e3:,.0f} kB")


if __name__ == "__main__":
    main()
