"""Where staged shards live under a node-local directory ``TO``, and the locks that let jobs share them.

    TO/clusterdeck/cache/<set>/<shard>.tar          persistent cache (keep = true, `clusterdeck stage`)
    TO/clusterdeck/cache/<set>/.<shard>.tar.lock    flock held while one stager checks or copies the shard
    TO/clusterdeck/job-<id>/node-<k>/cache/<set>/   a job's own copies (keep = false), removed when it ends
    TO/clusterdeck/job-<id>/node-<k>/view-<a>-<r>/  hard links (<set>/<shard>.tar) to the shards this start
                                                    (attempt a, SLURM restart r) verified; READY or FAILED
                                                    say how staging ended

``<set>`` is the shard set's directory name and a digest of its index (every shard's name and
sha256), so two shard sets never share files and a re-sharded set gets a fresh cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from clusterdeck.jobs import atomic
from clusterdeck.jobs.stage.copy import Cancelled
from clusterdeck.jobs.train.shardset import ShardSet

ROOT = "clusterdeck"
LOCK_POLL_S = 0.1
READY, FAILED = "READY", "FAILED"


def shared_cache(to: Path) -> Path:
    return to / ROOT / "cache"


def job_dir(to: Path, job_id: str) -> Path:
    return to / ROOT / f"job-{re.sub(r'[^A-Za-z0-9_.-]', '_', job_id)}"


def node_dir(to: Path, job_id: str, node: int) -> Path:
    """One node's part of a job's staging: nodes never touch each other's, even when ``to`` is shared."""
    return job_dir(to, job_id) / f"node-{node}"


def set_name(shard_set: ShardSet) -> str:
    """The cache directory name of a shard set."""
    digest = hashlib.sha256()
    for split in sorted(shard_set.splits):
        for shard in shard_set.splits[split]:
            digest.update(f"{split}/{shard.name}/{shard.sha256}\n".encode())
    return f"{shard_set.root.name}-{digest.hexdigest()[:12]}"


_held: set[int] = set()
_held_lock = threading.Lock()


def _close_held_in_child() -> None:
    """A forked child (a DataLoader worker) shares the parent's open lock files; flock is released only
    when every descriptor is closed, so the child closes its copies at once."""
    for fd in list(_held):
        with suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


def open_lock(path: Path) -> int:
    """A descriptor to flock ``path`` with: read-only when the file is there, since flock needs no write access and a
    teammate's lock made under umask 022 (0644) is not writable by the rest of the group; created when absent, with
    the umask's mode, as the shards (under umask 002 the group's stagers could write it too)."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        pass
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, atomic.FILE_MODE)
    except PermissionError:  # made by another stager meanwhile, in a directory we cannot write
        return os.open(path, os.O_RDONLY)


@contextmanager
def locked(dest: Path, *, wait: bool, stop: threading.Event) -> Iterator[bool]:
    """Holds the lock of ``dest`` (yields True), or yields False when ``wait`` is off and another stager has it.

    Waiting polls, so a stager asked to stop (``stop``) is never stuck behind another one's lock.
    """
    fd = open_lock(dest.with_name(f".{dest.name}.lock"))
    with _held_lock:
        _held.add(fd)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                if stop.is_set():
                    raise Cancelled from None
                time.sleep(LOCK_POLL_S)
        yield True
    finally:
        with _held_lock:
            _held.discard(fd)
        os.close(fd)  # closing releases the lock
