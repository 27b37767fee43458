"""Reading one shard: its members in file order, grouped into samples by key, as webdataset groups them.

The shard step writes plain ustar members (``jobs.shard.tarwrite``); those headers are parsed
here directly, checksum included, without tarfile's per-member work. At the first header of any other
kind (GNU long names, PAX records, directories: a shard set made by another tool), reading
goes on from that header with tarfile, as webdataset's ``tar_file_iterator`` reads a tar. Members are
grouped into samples as webdataset's ``group_by_keys`` groups them; ``tests/test_loader.py`` checks
both against webdataset. webdataset itself is not imported: it loads torch, which ``clusterdeck
export`` does without.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from clusterdeck.jobs.shard.encode import IMAGE_FIELDS
from clusterdeck.jobs.stage.job import StageFailed, wait_staged
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.train.shardset import Shard, ShardReadError

BLOCK = 512
_END = bytes(BLOCK)
_PLAIN = (b"0", b"\0")  # regular file type flags
_READ_BUFFER = 1 << 20
_META = re.compile(r"__[^/]*__($|/)")  # names webdataset skips
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext: key, then every extension


def read_shard(shard: Shard, pipeline: Pipeline | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard, in file order, as ``{"__key__", "jpg" or "png", "cls"}``; ``pipeline`` counts them."""
    if shard.staging is not None:
        try:
            wait_staged(shard.path, shard.staging)
        except StageFailed as exc:
            raise ShardReadError(str(exc)) from None
    url = str(shard.path)
    try:
        with open(shard.path, "rb", buffering=_READ_BUFFER) as f:
            read, count = 0, 0
            for sample in group_by_keys(members(f, url)):
                if pipeline is not None:
                    position = f.tell()
                    pipeline.add(position - read)
                    read = position
                count += 1
                yield sample
    except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
        raise ShardReadError(f"shard {shard.path} is unreadable or corrupt: {exc}") from exc
    if shard.samples and count != shard.samples:  # the tarfile fallback stops quietly at a cut between members
        raise ShardReadError(f"shard {shard.path} holds {count} samples, its index says {shard.samples}")


def members(f: BinaryIO, url: str) -> Iterator[dict[str, Any]]:
    """Every file member but the .json ones, as webdataset's ``{"fname", "data", "__url__"}``."""
    offset = 0
    while True:
        header = f.read(BLOCK)
        if header == _END:
            return
        if len(header) < BLOCK:  # nothing at all included: a cut at a member boundary would lose samples silently
            raise EOFError(f"truncated tar header at byte {offset}" if header else f"truncated at byte {offset}")
        if header[156:157] not in _PLAIN or header[124] & 0x80:  # another member type, or a base-256 size
            f.seek(offset)
            yield from _tarfile_members(f, url)
            return
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        stored = int(header[148:156].rstrip(b"\0 ") or b"0", 8)
        if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise tarfile.ReadError(f"bad tar header checksum at byte {offset}")
        name = header[:100].split(b"\0", 1)[0].decode()
        if header[257:262] == b"ustar" and header[345]:
            name = header[345:500].split(b"\0", 1)[0].decode() + "/" + name
        data = f.read(size)
        if len(data) < size:
            raise EOFError(f"truncated tar member {name} at byte {offset}")
        padding = -size % BLOCK
        if padding:
            f.seek(padding, 1)
        offset += BLOCK + size + padding
        if _wanted(name):
            yield {"fname": name, "data": data, "__url__": url}


def _tarfile_members(f: BinaryIO, url: str) -> Iterator[dict[str, Any]]:
    """The rest of the tar through tarfile (any header kind): regular files but webdataset's ``__meta__`` ones."""
    with tarfile.open(fileobj=f, mode="r|*") as stream:
        for info in stream:
            if info.isreg() and not _META.match(info.name) and _wanted(info.name):
                member = stream.extractfile(info)
                assert member is not None
                yield {"fname": info.name, "data": member.read(), "__url__": url}
            stream.members = []  # type: ignore[attr-defined]  # a stream's member list only grows


def group_by_keys(members: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Consecutive members sharing a key as one sample ``{"__key__", "__url__", <ext>: data …}``, extensions in
    lower case; a name without an extension is skipped and a repeated extension is an error, as in webdataset."""
    sample: dict[str, Any] | None = None
    for member in members:
        match = _KEY.match(member["fname"])
        if match is None:
            continue
        key, ext = match.group(1), match.group(2).lower()
        if sample is None or key != sample["__key__"]:
            if sample is not None:
                yield sample
            sample = {"__key__": key, "__url__": member["__url__"]}
        if ext in sample:
            raise ValueError(f"{member['fname']}: duplicate file name in tar file {ext}")
        sample[ext] = member["data"]
    if sample is not None:
        yield sample


def image_of(sample: dict[str, Any]) -> bytes:
    """The image member of a sample: .jpg, or .png (lossless npz inputs) and the other kinds the shard step keeps."""
    for field in IMAGE_FIELDS:
        if field in sample:
            data: bytes = sample[field]
            return data
    raise ShardReadError(f"sample {sample['__key__']} in {sample.get('__url__')}: no image member")


def _wanted(name: str) -> bool:
    return not name.endswith(".json")
