"""The ILSVRC2012 tars read in place: nothing is extracted, each image is one ``pread`` at its offset.

``ILSVRC2012_img_train.tar`` is an uncompressed tar of 1,000 per-class tars
(``n01440764.tar`` holding ``n01440764_10026.JPEG`` …); ``ILSVRC2012_img_val.tar`` is a flat
tar of 50,000 JPEGs. Listing reads only the 512-byte headers (seeking over the images), so
it costs one small read per image, not a pass over the 140 GB; writers then read any
sample directly, which is what a global shuffle needs. Both tars name their members as
the extracted tree would (``<wnid>/<file>``, ``<file>``), so the shards are the same bytes
as those made from the extracted directories.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.sources import Entries, ValLabels, val_entries

_fds: dict[str, int] = {}  # path -> descriptor, per process (inherited across fork; pread keeps no offset)


@dataclass(frozen=True)
class TarSource:
    path: str

    def read(self, loc: tuple[int, int]) -> bytes:
        offset, size = loc
        fd = _fds.get(self.path)
        if fd is None:
            fd = _fds[self.path] = os.open(self.path, os.O_RDONLY)
        parts, got = [], 0
        while got < size:
            part = os.pread(fd, size - got, offset + got)
            if not part:
                raise OSError(f"{self.path} ends inside this member (truncated archive)")
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def raw_size(self, loc: tuple[int, int]) -> int:
        return loc[1]


@contextmanager
def open_for_headers(path: Path) -> Iterator[BinaryIO]:
    """``path`` unbuffered, read at random: a buffered file would fill its buffer (``st_blksize``, megabytes
    on Lustre and GPFS) at every seek, reading the whole archive to list its headers."""
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        yield cast(BinaryIO, f)


def tar_members(f: BinaryIO, where: str, end: int | None = None) -> Iterator[tarfile.TarInfo]:
    """The headers of the tar that starts at ``f``'s position (and ends by ``end``); offsets are absolute in ``f``.

    tarfile ends its iteration quietly at a damaged or missing header; here the archive must end
    with its end-of-archive block, so a truncated or damaged tar is an error, not fewer images.
    """
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            member = tar.next()
            while member is not None:
                tar.members.clear()  # tarfile keeps every header it read: not millions of them
                if end is not None and member.offset_data + member.size > end:
                    raise UserError(f"{where}: member {member.name} runs past the end of its tar")
                yield member
                member = tar.next()
            f.seek(tar.offset)
            block = f.read(tarfile.BLOCKSIZE)
    except tarfile.ReadError as exc:
        if "end of data" in str(exc) or "truncated" in str(exc):
            raise UserError(f"{where}: truncated ({exc})") from None
        raise UserError(f"{where}: not an uncompressed tar ({exc}); a .tar.gz cannot be read in place") from None
    if len(block) < tarfile.BLOCKSIZE or any(block) or (end is not None and tar.offset + tarfile.BLOCKSIZE > end):
        what = "truncated" if len(block) < tarfile.BLOCKSIZE else "damaged"
        raise UserError(f"{where}: {what} at byte {tar.offset} (no valid header or end-of-archive block there)")


def plain_tar(path: Path) -> bool:
    """``path`` is a file named as an uncompressed tar (a compressed one is ``imagefolder-tar``'s to read)."""
    return path.is_file() and path.name.lower().endswith(".tar")


def first_file(path: Path) -> tarfile.TarInfo:
    """The header of the first file in the tar ``path``; UserError if it holds none."""
    with open_for_headers(path) as f:
        first = next((m for m in tar_members(f, str(path)) if m.isfile()), None)
    if first is None:
        raise UserError(f"{path}: a tar without files")
    return first


def list_train_tar(path: Path) -> Entries:
    """Every image of every ``<wnid>.tar`` inside ``path``, as ``<wnid>/<file>``, sorted as a directory walk is."""
    per_class: dict[str, list[tuple[str, tuple[int, int]]]] = {}
    skipped = []
    with open_for_headers(path) as f:  # the outer and inner iterations share ``f``: tarfile seeks to each header
        for outer in tar_members(f, str(path)):
            if not outer.isfile():
                continue
            if not outer.name.endswith(".tar"):
                skipped.append({"path": outer.name, "reason": "not a per-class <wnid>.tar"})
                continue
            wnid = os.path.basename(outer.name).removesuffix(".tar")
            f.seek(outer.offset_data)
            members = per_class.setdefault(wnid, [])
            for inner in tar_members(f, f"{path}:{outer.name}", outer.offset_data + outer.size):
                if inner.isfile():
                    members.append((inner.name.removeprefix("./"), (inner.offset_data, inner.size)))
    if not per_class:
        raise UserError(f"{path}: no per-class <wnid>.tar members (expected ILSVRC2012_img_train.tar)")
    classes = sorted(per_class)
    entries = Entries(TarSource(str(path)), [], [], [], classes, skipped)
    for wnid in classes:
        for name, loc in sorted(per_class[wnid]):
            entries.add(f"{wnid}/{name}", loc, wnid)
    return entries


def list_val_tar(path: Path, labels: ValLabels) -> Entries:
    """The flat validation tar: each member's number names its ground-truth line."""
    found = []
    with open_for_headers(path) as f:
        for member in tar_members(f, str(path)):
            if member.isfile():
                found.append((os.path.basename(member.name), (member.offset_data, member.size)))
    return val_entries(TarSource(str(path)), found, labels)
