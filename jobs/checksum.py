"""The checksums of shards: sha256 (always in the index, and what ``inspect --sha256`` checks) and xxh3-128, the
fast one staging, resume and ``inspect`` verify with when the index has it.

xxh3-128 (``xxhash``) is chosen by measuring (``bench/checksum.py``): 26 GB/s on one core against 7.6 GB/s for
BLAKE3 (14 GB/s on both cores) and 2.1 GB/s for sha256, over 256 MB in memory. Staging must check every byte it copies,
and at sha256's rate the check, not the disk, set the pace. A shard set written before it existed has sha256
only, and is verified with that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

FAST = "xxh3_128"
"""The index key of the fast checksum."""
CRYPTO = "sha256"


class Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


def hasher(algorithm: str) -> Hasher:
    if algorithm == FAST:
        import xxhash

        h: Hasher = xxhash.xxh3_128()
        return h
    return hashlib.sha256()


def expected(record: dict[str, Any], fast: bool = True) -> tuple[str, str]:
    """(algorithm, hex digest) to verify a shard by: the fast one when its index entry has it (and ``fast``)."""
    if fast and record.get(FAST):
        return FAST, str(record[FAST])
    return CRYPTO, str(record[CRYPTO])


def file_digest(path: Any, algorithm: str, chunk: int = 8 << 20, progress: Callable[[int], None] | None = None) -> str:
    h = hasher(algorithm)
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            h.update(view[:n])
            if progress is not None:
                progress(n)
    return h.hexdigest()
