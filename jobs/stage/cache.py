"""Where staged shards live under a node-local directory ``TO``, and the locks that let jobs share them.

    TO/clusterdeck/cache/<set>/<shard>.tar        persistent cache (keep = true, `clusterdeck stage`)
    TO/clusterdeck/cache/<set>/.<shard>.tar.lock  flock held while one stager checks or copies the shard
    TO/clusterdeck/job-<id>/cache/<set>/…         a job's own copies (keep = false), removed when it ends
    TO/clusterdeck/job-<id>/view-<n>/<set>/…      hard links to the shards this start verified;
                                                  READY or FAILED say how staging ended

``<set>`` is the shard set's directory name and a digest of its index (every shard's name and
sha256), so two shard sets never share files and a re-sharded set gets a fresh cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jobs.train.shardset import read_shardset

ROOT = "clusterdeck"
READY, FAILED = "READY", "FAILED"


def shared_cache(to: Path) -> Path:
    return to / ROOT / "cache"


def job_dir(to: Path, job_id: str) -> Path:
    return to / ROOT / f"job-{re.sub(r'[^A-Za-z0-9_.-]', '_', job_id)}"


def set_name(shard_set: Path, field: str) -> str:
    """The cache directory name of the shard set at ``shard_set``."""
    index = read_shardset(shard_set, field)
    digest = hashlib.sha256()
    for split in sorted(index.splits):
        for shard in index.splits[split]:
            digest.update(f"{split}/{shard.name}/{shard.sha256}\n".encode())
    return f"{shard_set.name}-{digest.hexdigest()[:12]}"


@contextmanager
def locked(dest: Path, *, wait: bool) -> Iterator[bool]:
    """Holds the lock of ``dest`` (yields True), or yields False when ``wait`` is off and another stager has it."""
    fd = os.open(dest.with_name(f".{dest.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock
