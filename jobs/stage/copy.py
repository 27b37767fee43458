"""Copying and checking one shard: the kernel copies, and what landed is hashed from the page cache.

A copy goes to a temporary name next to its destination and is renamed only once its size
and checksum (xxh3-128 where the index has it, else sha256) match the index, so a shard at its
final name is always whole. Nothing is fsynced: a node that crashes may leave a damaged file
under the final name, and the next stager finds it by its checksum and copies it again.

The bytes never pass through Python on their way: each 16 MiB chunk is copied by
``copy_file_range`` (a reflink or a server-side copy where the filesystems offer one) or, between
filesystems that refuse it (a parallel filesystem to a node's SSD, before Linux 5.3 or after
5.19), by ``sendfile``; the chunk is then read back from the destination's page cache, where it
was just written, into one reused buffer and hashed. So the checksum covers what is in the
destination file, not what was read. Measured on 6 x 256 MB cold, 4 streams, to the end of ``sync``
(``python bench/copy_methods.py``, two runs): read + hash + write through a reused buffer 1.55-3.33 s,
copy_file_range + read-back 1.13-1.23 s, sendfile + read-back 1.12-1.19 s, a mapped source 1.51-1.82 s,
``cp -r`` 1.17-1.23 s. Where neither call works (a filesystem without splice support), it falls back
to the buffer.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _read_back(fd: int, view: memoryview, at: int, digest: Any) -> None:
    """Hashes ``len(view)`` bytes of ``fd`` from offset ``at``, read into ``view`` a slice at a time (each slice
    is hashed while it is still in the CPU's cache)."""
    for start in range(0, len(view), SLICE):
        piece = view[start : start + SLICE]
        read = 0
        while read < len(piece):
            got = os.preadv(fd, [piece[read:]], at + start + read)
            if not got:
                raise OSError(errno.EIO, "the file ended before the bytes written to it")
            read += got
        digest.update(piece)


_REFUSED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM, errno.EBADF}
"""What copy_file_range and sendfile say when this pair of files (or this kernel, or a container's seccomp
profile) does not offer them."""


class _KernelCopy:
    """Copies chunks from one open file to another at their offsets: by copy_file_range, falling back to
    sendfile and then to a read and a write through ``buffer`` for the rest of the file at the first refusal.
    A copy_file_range that copies nothing is not trusted as the end of the file (kernels 5.3-5.18 returned 0
    for some pairs of filesystems): sendfile is asked next."""

    def __init__(self, source: int, dest: int, buffer: bytearray) -> None:
        self.source, self.dest, self.view = source, dest, memoryview(buffer)
        self.ways: list[Callable[[int], int]] = [self._range, self._sendfile, self._buffered]

    def chunk(self, n: int) -> int:
        """Copies up to ``n`` bytes; 0 at the end of the source."""
        while True:
            try:
                done = self.ways[0](n)
            except OSError as exc:
                if exc.errno not in _REFUSED or len(self.ways) == 1:
                    raise
                self.ways.pop(0)
                continue
            if done or self.ways[0] != self._range:
                return done
            self.ways.pop(0)

    def _range(self, n: int) -> int:
        return os.copy_file_range(self.source, self.dest, n)

    def _sendfile(self, n: int) -> int:
        return os.sendfile(self.dest, self.source, None, n)

    def _buffered(self, n: int) -> int:
        got = os.readv(self.source, [self.view[:n]])
        done = 0
        while done < got:
            done += os.write(self.dest, self.view[done:got])
        return got


def _copy(
    src: Path, tmp: Path, progress: Progress, stop: threading.Event, throttle: Throttle, algorithm: str
) -> tuple[int, str]:
    """Copies ``src`` to ``tmp``; (bytes copied, checksum of ``tmp``'s bytes as read back chunk by chunk)."""
    digest = hasher(algorithm)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    size = 0
    with open(src, "rb", buffering=0) as source, open(tmp, "w+b", buffering=0) as out:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(source.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        kernel = _KernelCopy(source.fileno(), out.fileno(), buffer)
        while n := kernel.chunk(CHUNK):
            if stop.is_set():
                raise Cancelled
            _read_back(out.fileno(), view[:n], size, digest)
            size += n
            progress(n)
            throttle.take(n)
    return size, digest.hexdigest()


def file_digest(path: Path, progress: Progress, stop: threading.Event, algorithm: str = CRYPTO) -> tuple[int, str]:
    """(size, checksum) of a file, read once in large sequential reads."""
    digest = hasher(algorithm)
    view = memoryview(bytearray(CHUNK))
    size = 0
    with open(path, "rb", buffering=0) as f:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(view):
            if stop.is_set():
                raise Cancelled
            for start in range(0, n, SLICE):
                digest.update(view[start : min(n, start + SLICE)])
            size += n
            progress(n)
    return size, digest.hexdigest()


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
        got_size, got = _copy(src, tmp, progress, stop, throttle, algorithm)
        if (got_size, got) != (size, want):
            raise Mismatch(
                f"shard {src} does not match its index ({got_size} bytes, {algorithm} {got[:12]}…; the index says "
                f"{size} bytes, {want[:12]}…): it changed after sharding; shard the data again"
            )
        os.rename(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
