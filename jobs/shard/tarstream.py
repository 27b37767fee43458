"""Compressed tars (``.tar.gz``, ``.tar.zst``, ``.tar.xz``, ``.tar.bz2``) read as a stream: nothing extracted.

A compressed tar cannot seek to a member, so it is read front to back, twice at most: once for the listing
(``scan``: every regular file's name and size, in archive order; the headers pass the data by decompressing
it), once by the spill (``StreamedTarSource.stream``: the wanted members' bytes). A member is located by its
ordinal among the archive's regular files and its size, ``(ordinal, size)``, so the source stays a small
picklable value. The listing is cached in the shard step's ``cache`` directory keyed by the archive's path,
size and mtime: the merge part and a resume do not decompress again.

tarfile ends its iteration quietly at a missing or damaged header; here the archive must end with its
end-of-archive block and its compressed stream must end where it says it does, so a truncated download is an
error naming the archive, not fewer images.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import socket
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from clusterdeck.jobs.errors import UserError

COMPRESSIONS = {".tar.gz": "gz", ".tgz": "gz", ".tar.zst": "zst", ".tzst": "zst", ".tar.xz": "xz", ".txz": "xz"}
COMPRESSIONS |= {".tar.bz2": "bz2", ".tbz2": "bz2"}
MAGIC = {"gz": b"\x1f\x8b", "zst": b"\x28\xb5\x2f\xfd", "xz": b"\xfd7zXZ\x00", "bz2": b"BZh"}
READ_BUFFER = 1 << 20
HEAD_BYTES = 1 << 16
"""Of each image kept while listing for ``inspect``: enough for PIL to read its size from the header."""
CACHE_FORMAT = "clusterdeck-tar-members 1"
_STOP = "_clusterdeck_stop"  # set on a TarFile by _Checked: why tarfile stopped reading headers


def compression_of(path: Path) -> str | None:
    """``gz``, ``zst``, ``xz`` or ``bz2`` from the name of a compressed tar; None for any other name."""
    name = path.name.lower()
    return next((kind for suffix, kind in COMPRESSIONS.items() if name.endswith(suffix)), None)


def check_magic(path: Path, kind: str) -> None:
    """The file starts as a ``kind`` stream does (a few bytes read: nothing decompressed at submit)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(MAGIC[kind]):
        raise UserError(f"{path}: not a {kind} file (its name says it is a compressed tar)")


@contextmanager
def _opened(path: Path, kind: str) -> Iterator[IO[bytes]]:
    """``path`` decompressed, read through a large buffer (``gzip.open`` reads 8 KB at a time: a third slower)."""
    with open(path, "rb", buffering=READ_BUFFER) as raw:
        if kind == "gz":
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")
        elif kind == "xz":
            stream = lzma.LZMAFile(raw)  # noqa: SIM115 (closed below)
        elif kind == "bz2":
            stream = bz2.BZ2File(raw)
        else:
            import zstandard  # a dependency of this format only

            # read_across_frames: pzstd and some tools write one frame per block of input
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_size=READ_BUFFER, read_across_frames=True)
        with stream:
            yield stream


class _Checked(tarfile.TarInfo):
    """Records on the archive why tarfile stopped reading headers: a truncated or damaged one is not an end."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):  # type: ignore[attr-defined]
            setattr(tar, _STOP, "truncated: it ends early")
            raise
        except tarfile.InvalidHeaderError as exc:  # type: ignore[attr-defined]
            setattr(tar, _STOP, f"damaged: no valid header ({exc})")
            raise


def _errors() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError]
    try:
        import zstandard

        kinds.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(kinds)


@contextmanager
def _named_errors(path: Path) -> Iterator[None]:
    """Any error reading the archive as one line naming it."""
    try:
        yield
    except UserError:
        raise
    except _errors() as exc:
        if isinstance(exc, EOFError) or "end of data" in str(exc) or "truncated" in str(exc):
            raise UserError(f"{path}: truncated: the archive ends early ({exc})") from None
        if isinstance(exc, OSError) and exc.errno is not None:
            raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
        raise UserError(f"{path}: damaged or not a {compression_of(path)} tar ({exc})") from None


def walk(path: Path, *, check_end: bool = True) -> Iterator[tuple[int, tarfile.TarInfo, tarfile.TarFile]]:
    """(ordinal, header, archive) of every regular file of the compressed tar ``path``, in archive order; the
    member's data can be read with ``archive.extractfile(header)`` before the next is asked for."""
    kind = compression_of(path)
    assert kind is not None, f"{path}: not named as a compressed tar"
    with _named_errors(path), _opened(path, kind) as raw:
        with tarfile.open(fileobj=raw, mode="r|", bufsize=READ_BUFFER, tarinfo=_Checked) as tar:
            ordinal = 0
            member = tar.next()
            while member is not None:
                tar.members.clear()  # a stream keeps every header it read: not millions of them
                if member.isfile():
                    yield ordinal, member, tar
                    ordinal += 1
                member = tar.next()
            if check_end and getattr(tar, _STOP, None):
                raise UserError(f"{path}: {getattr(tar, _STOP)} at byte {tar.offset} of the tar")
        while check_end and raw.read(READ_BUFFER):  # the compressed stream's own end (and checksum) is checked
            pass


@dataclass(frozen=True)
class StreamedTarSource:
    """A compressed tar's members, located by ``(ordinal, size)``; read front to back only (``spill``)."""

    path: str

    def stream(self, wanted: set[Any]) -> Iterator[tuple[tuple[int, int], bytes]]:
        left = len(wanted)
        if not left:
            return
        for ordinal, member, tar in walk(Path(self.path), check_end=False):
            loc = (ordinal, member.size)
            if loc in wanted:
                handle = tar.extractfile(member)
                assert handle is not None
                with _named_errors(Path(self.path)):
                    data = handle.read()
                if len(data) != member.size:
                    raise UserError(f"{self.path}: truncated: member {member.name} ends early")
                yield loc, data
                left -= 1
                if not left:
                    return  # the rest of the archive holds none of them

    def raw_size(self, loc: tuple[int, int]) -> int:
        return loc[1]


@dataclass
class Scan:
    """A compressed tar's regular files in archive order (ordinal = index), and the heads of a few for inspect."""

    names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    heads: dict[int, bytes] = field(default_factory=dict)


def scan(path: Path, keep: int = 0, seed: int = 0) -> Scan:
    """One pass over ``path``'s headers; ``keep``: the first bytes of that many files picked at random
    (reservoir sampling, seeded) are kept, for inspect to measure image sizes."""
    found = Scan()
    rng = random.Random(seed)
    for ordinal, member, tar in walk(path):
        found.names.append(member.name)
        found.sizes.append(member.size)
        if keep and (ordinal < keep or (slot := rng.randrange(ordinal + 1)) < keep):
            handle = tar.extractfile(member)
            assert handle is not None
            with _named_errors(path):
                head = handle.read(HEAD_BYTES)
            if ordinal < keep:
                found.heads[ordinal] = head
            else:
                found.heads.pop(sorted(found.heads)[slot])
                found.heads[ordinal] = head
    return found


def cached_scan(path: Path, cache: Path | None) -> Scan:
    """``scan(path)``, kept in ``cache`` under the archive's path, size and mtime (written atomically: the tasks
    of an array may list at the same time)."""
    if cache is None:
        return scan(path)
    st = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    kept = cache / f"{path.name}-{tag}.members"
    if kept.exists():
        found = _read_scan(kept)
        if found is not None:
            return found
    found = scan(path)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_name(f".{kept.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", buffering=READ_BUFFER) as f:
            f.write(CACHE_FORMAT + "\n")
            for name, size in zip(found.names, found.sizes, strict=True):
                f.write(f"{size}\t{_quoted(name)}\n")
        os.replace(tmp, kept)
    finally:
        tmp.unlink(missing_ok=True)
    return found


def _quoted(name: str) -> str:
    return json.dumps(name) if ("\n" in name or "\t" in name or name.startswith('"')) else name


def _read_scan(kept: Path) -> Scan | None:
    """The cached listing; None if it is not one this version wrote (it is then listed again)."""
    found = Scan()
    with open(kept, encoding="utf-8", buffering=READ_BUFFER) as f:
        if f.readline().rstrip("\n") != CACHE_FORMAT:
            return None
        for line in f:
            size, name = line.rstrip("\n").split("\t", 1)
            found.sizes.append(int(size))
            found.names.append(json.loads(name) if name.startswith('"') else name)
    return found


def first_file(path: Path) -> str | None:
    """The name of the compressed tar's first regular file (only its start is decompressed); None if none."""
    for _, member, _ in walk(path, check_end=False):
        return member.name
    return None


def head_sizes(heads: dict[int, bytes]) -> tuple[list[tuple[int, int]], int]:
    """(image sizes, how many were unreadable) from the kept heads: PIL reads a size from the header alone."""
    from PIL import Image

    sizes, unreadable = [], 0
    for head in heads.values():
        try:
            with Image.open(io.BytesIO(head)) as image:
                sizes.append(image.size)
        except (OSError, SyntaxError, ValueError):
            unreadable += 1
    return sizes, unreadable
