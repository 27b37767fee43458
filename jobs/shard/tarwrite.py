"""A deterministic tar writer that hashes as it writes.

webdataset reads plain tar files; what makes ours reproducible is that every header field
that would vary between runs (mtime, owner, mode) is fixed, so the same samples give the
same bytes and the same sha256.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


class ShardTarWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._sha = hashlib.sha256()
        self.bytes = 0
        self.samples = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self._sha.update(data)
        self.bytes += len(data)

    def add_member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o444
        info.uname = info.gname = ""
        self._write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        self._write(data)
        pad = -len(data) % _BLOCK
        if pad:
            self._write(b"\0" * pad)

    def add_sample(self, key: str, fields: dict[str, bytes]) -> None:
        """Members of one sample are consecutive and share the key, as webdataset groups them."""
        for ext, data in fields.items():
            self.add_member(f"{key}.{ext}", data)
        self.samples += 1

    def close(self) -> str:
        """Writes the end-of-archive blocks, syncs, and returns the sha256 of the whole file."""
        end = 2 * _BLOCK
        self._write(b"\0" * (end + (-(self.bytes + end) % _RECORD)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._sha.hexdigest()

    def __enter__(self) -> ShardTarWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if not self._file.closed:
            self._file.close()


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
    return sha.hexdigest()
