"""Copying and checking one shard: large sequential reads, hashed as they are read.

A copy goes to a temporary name next to its destination and is renamed only once its size
and checksum (xxh3-128 where the index has it, else sha256) match the index, so a shard at its
final name is always whole. Nothing is fsynced: a node that crashes may leave a damaged file
under the final name, and the next stager finds it by its checksum and copies it again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clusterdeck.jobs.checksum import CRYPTO, hasher

CHUNK = 16 * 2**20
"""Bytes per read: large sequential reads are what parallel filesystems serve best."""
SLICE = 2**20
"""Bytes hashed and written at a time: each slice is still in the CPU cache when it is written."""

Progress = Callable[[int], None]


class Cancelled(Exception):
    """The stager was asked to stop (the job ends or was interrupted)."""


class Mismatch(Exception):
    """What was read does not match the index."""


class Throttle:
    """A cap on bytes per second shared by every stream; a rate of 0 is no cap."""

    def __init__(self, mb_s: float) -> None:
        self.rate = mb_s * 1e6
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.taken = 0

    def take(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            self.taken += n
            due = self.started + self.taken / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def temp_name(dest: Path) -> Path:
    return dest.with_name(f"{dest.name}.tmp-{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}")


def _stream(
    src: Path,
    sink: Callable[[memoryview], None] | None,
    progress: Progress,
    stop: threading.Event,
    throttle: Throttle,
    algorithm: str,
) -> tuple[int, str]:
    digest = hasher(algorithm)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    size = 0
    with open(src, "rb", buffering=0) as f:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(buffer):
            if stop.is_set():
                raise Cancelled
            for start in range(0, n, SLICE):
                piece = view[start : min(n, start + SLICE)]
                digest.update(piece)
                if sink is not None:
                    sink(piece)
            size += n
            progress(n)
            throttle.take(n)
    return size, digest.hexdigest()


def file_digest(path: Path, progress: Progress, stop: threading.Event, algorithm: str = CRYPTO) -> tuple[int, str]:
    """(size, checksum) of a file, read once."""
    return _stream(path, None, progress, stop, Throttle(0), algorithm)


def copy_verified(
    src: Path,
    dest: Path,
    *,
    size: int,
    digest: tuple[str, str],
    progress: Progress,
    stop: threading.Event,
    throttle: Throttle,
) -> None:
    """Copies ``src`` to ``dest`` via a temporary file; ``Mismatch`` if the bytes are not the indexed ones
    (``digest``: the algorithm and checksum to verify them by, ``jobs.checksum.expected``)."""
    algorithm, want = digest
    tmp = temp_name(dest)
    try:
        with open(tmp, "wb", buffering=0) as out:

            def write(chunk: memoryview) -> None:
                while chunk:
                    chunk = chunk[out.write(chunk) :]

            got_size, got = _stream(src, write, progress, stop, throttle, algorithm)
        if (got_size, got) != (size, want):
            raise Mismatch(
                f"shard {src} does not match its index ({got_size} bytes, {algorithm} {got[:12]}…; the index says "
                f"{size} bytes, {want[:12]}…): it changed after sharding; shard the data again"
            )
        os.rename(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
