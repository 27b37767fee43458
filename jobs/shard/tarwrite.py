"""A deterministic tar writer that hashes as it writes.

webdataset reads plain tar files; what makes ours reproducible is that every header field
that would vary between runs (mtime, owner, mode) is fixed, so the same samples give the
same bytes and the same sha256.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from clusterdeck.jobs.checksum import FAST, hasher

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_ZEROS = bytes(_BLOCK)


def _header_template() -> bytearray:
    """A ustar header with every fixed field set: mode 0444, uid/gid 0, mtime 0, regular file."""
    h = bytearray(_BLOCK)
    h[100:108] = b"0000444\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
    h[156:157] = tarfile.REGTYPE
    h[257:265] = b"ustar\x0000"
    return h


_TEMPLATE = _header_template()
_TEMPLATE_SUM = sum(_TEMPLATE)


def member_header(name: str, size: int) -> bytes:
    """The 512-byte header of one member, built directly: tarfile's generic path is a third of the write time."""
    raw = name.encode()
    if len(raw) > 100 or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uname, info.gname = size, 0o444, "", ""
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    h = _TEMPLATE.copy()
    h[: len(raw)] = raw
    size_field = b"%011o\0" % size
    h[124:136] = size_field
    h[148:156] = b"%06o\0 " % (_TEMPLATE_SUM + sum(raw) + sum(size_field))
    return bytes(h)


class ShardTarWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._sha = hashlib.sha256()
        self._fast = hasher(FAST)
        self.xxh3 = ""
        """The fast checksum of the whole file (``jobs.checksum``), set by ``close``."""
        self.bytes = 0
        self.samples = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self._sha.update(data)
        self._fast.update(data)
        self.bytes += len(data)

    def add_member(self, name: str, data: bytes) -> None:
        self._write(member_header(name, len(data)))
        self._write(data)
        pad = -len(data) % _BLOCK
        if pad:
            self._write(_ZEROS[:pad])

    def add_sample(self, key: str, fields: dict[str, bytes]) -> None:
        """Members of one sample are consecutive and share the key, as webdataset groups them."""
        for ext, data in fields.items():
            self.add_member(f"{key}.{ext}", data)
        self.samples += 1

    def close(self) -> str:
        """Writes the end-of-archive blocks and returns the sha256 of the whole file.

        No fsync: a shard is only trusted again after its checksum is verified, so a file torn
        by a crash is caught and rewritten on resume, and the writers are not stalled on the disk.
        """
        end = 2 * _BLOCK
        self._write(b"\0" * (end + (-(self.bytes + end) % _RECORD)))
        self._file.close()
        self.xxh3 = self._fast.hexdigest()
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
