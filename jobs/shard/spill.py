"""The exact global shuffle for inputs that cannot be read at random: a second, streaming pass spills the samples
into bucket files by their place in the permutation, and the shard writers read each shard from its bucket.

A parquet row group or a compressed tar is read front to back; reading its samples one by one in permutation
order would decompress it once per sample. So an input of this kind has a ``StreamedSource``: its listing (names,
classes, sizes: what planning needs) comes from a first pass or from metadata, and ``stream()`` gives every
sample's bytes in the input's own order. Before a task writes its shards, ``spill`` streams the input once and
appends each sample the task's unfinished shards need to the bucket of its shard (consecutive shards share a
bucket, so a task keeps at most ``MAX_BUCKETS`` files open); each shard's job then reads its samples from there
by offset (``SpillSource``), in permutation order, so the shards are byte for byte those an ImageFolder tree of
the same images gives. Each input byte is read twice at most: once listing, once spilling.

The buckets live under the scratch directory (``shard.scratch``, default ``<output>/.spill``). One job spills
them: the task itself, or, for an array, the step's ``spill`` part before the array starts, so the input is read
once whatever the number of tasks, and each task then reads the buckets of its own contiguous range of shards.
The free space is checked first. A folder without its ``DONE`` marker is a killed attempt's, removed before
spilling again; the spill is removed once its shards are written (by the task, or the array's merge). A spill
is only ever read by the shards it was made for: ``DONE`` holds a digest of each of them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from clusterdeck.jobs.diskspace import require_free
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.plan import ShardJob

Table = dict[Any, tuple[int, int, int]]
"""A shard's samples in the spill: stream locator → (bucket, offset, size)."""
MAX_BUCKETS = 256
"""Bucket files one task writes at once: each holds the samples of consecutive shards."""
WRITE_BUFFER = 1 << 20
DONE = "DONE"
TABLES = "tables"
PROGRESS_S = 30.0


_fds: dict[str, int] = {}  # bucket path -> descriptor, per process


class SpillDamaged(UserError):
    """A spilled sample cannot be read back whole: the spill was damaged or made for other input."""

    exit_code = 1


@runtime_checkable
class StreamedSource(Protocol):
    """A source read front to back only (``jobs.shard.sources.Source`` otherwise): ``read`` is not possible."""

    def stream(self, wanted: set[Any]) -> Iterator[tuple[Any, bytes]]:
        """(loc, raw bytes) of the samples whose locator is in ``wanted``, in the input's own order; an OSError or
        a UserError names the file (and member, or row) that cannot be read."""
        ...

    def raw_size(self, loc: Any) -> int | None: ...


@dataclass(frozen=True)
class SpillSource:
    """One shard's samples in the bucket files: ``table`` maps a sample's stream locator to (bucket, offset,
    size). Its ``repr`` is the stream source's, so a shard's members digest (``ShardJob.members_digest``) is the
    same whether it is written from a spill or found complete on a resume."""

    origin: Any
    folder: str
    table: Table

    def __repr__(self) -> str:
        return repr(self.origin)

    def read(self, loc: Any) -> bytes:
        """The sample's bytes; a spill that does not hold them whole is damaged: the task fails (a UserError, not
        the OSError of an unreadable input, which would skip the sample)."""
        where = self.table.get(loc)
        if where is None:
            raise SpillDamaged(f"{self.folder}: the spill holds no sample {loc}; remove it and run again")
        bucket, offset, size = where
        path = str(bucket_path(Path(self.folder), bucket))
        try:
            fd = _fds.get(path)
            if fd is None:
                fd = _fds[path] = os.open(path, os.O_RDONLY)  # one per bucket and process (pread keeps no offset)
            data = os.pread(fd, size, offset)
        except OSError as exc:
            raise SpillDamaged(f"{path}: cannot read spilled sample {loc} ({exc.strerror or exc})") from None
        if len(data) != size:
            raise SpillDamaged(f"{path}: spilled sample {loc} is cut short; remove {self.folder} and run again")
        return data

    def raw_size(self, loc: Any) -> int | None:
        return self.table[loc][2]


def bucket_path(folder: Path, bucket: int) -> Path:
    return folder / f"bucket-{bucket:05d}"


def spill(jobs: list[ShardJob], folder: Path, field: str, also_needed: int = 0) -> list[ShardJob]:
    """``jobs`` (shards still to write, all of one streamed source) with their samples spilled into buckets under
    ``folder``, reading from there; a spill of exactly these shards left by an earlier attempt is reused."""
    if not jobs:
        return jobs
    tables = load_spill(folder, jobs)
    if tables is None:
        tables = _spill(jobs, folder, field, also_needed)
    return reading_spill(jobs, folder, tables)


def load_spill(folder: Path, jobs: list[ShardJob]) -> dict[str, Table] | None:
    """The tables of a finished spill made for ``jobs`` (or for more shards, ``jobs`` among them); None if there
    is none, or it was made for other shards."""
    try:
        made_for = (folder / DONE).read_text().split()
    except OSError:
        return None
    if not set(_digests(jobs)) <= set(made_for):
        return None
    try:
        return {job.name: _load_table(folder / TABLES / f"{job.name}.json") for job in jobs}
    except (OSError, ValueError):
        return None


def _spill(jobs: list[ShardJob], folder: Path, field: str, also_needed: int) -> dict[str, Table]:
    """``also_needed``: bytes the same filesystem must also take afterwards (the shards, when the scratch is next
    to the output), checked with the spill's before the first byte."""
    origin = jobs[0].source
    assert isinstance(origin, StreamedSource), "only a streamed source is spilled"
    shutil.rmtree(folder, ignore_errors=True)  # a killed attempt's, or one for other shards
    folder.mkdir(parents=True)
    per_bucket = -(-len(jobs) // MAX_BUCKETS)
    where = {loc: (n // per_bucket, job.name) for n, job in enumerate(jobs) for loc in job.locs}
    need = sum(origin.raw_size(loc) or 0 for loc in where)
    what = f"spilling {len(where)} samples of {len(jobs)} shards" + (", then writing them" if also_needed else "")
    require_free(field, folder, need + also_needed, what, _SPACE_HINT)
    tables: dict[str, Table] = {job.name: {} for job in jobs}
    files: dict[int, Any] = {}
    offsets: dict[int, int] = {}
    started = last = time.monotonic()
    print(f"spill: streaming the input for {len(where)} samples of {len(jobs)} shards into {folder}", flush=True)
    try:
        for done, (loc, data) in enumerate(origin.stream(set(where)), start=1):
            bucket, shard = where[loc]
            f = files.get(bucket)
            if f is None:
                f = files[bucket] = open(bucket_path(folder, bucket), "wb", buffering=WRITE_BUFFER)  # noqa: SIM115
                offsets[bucket] = 0
            f.write(data)
            tables[shard][loc] = (bucket, offsets[bucket], len(data))
            offsets[bucket] += len(data)
            if time.monotonic() - last > PROGRESS_S:
                last = time.monotonic()
                print(f"spill: {done}/{len(where)} samples, {sum(offsets.values()) / 1e9:.2f} GB", flush=True)
    finally:
        for f in files.values():
            f.close()
    missing = [loc for loc, (_, shard) in where.items() if loc not in tables[shard]]
    if missing:
        raise OSError(f"the input ended before sample {missing[0]} ({len(missing)} missing): was it changed?")
    _save_tables(folder / TABLES, tables)
    (folder / DONE).write_text("\n".join(_digests(jobs)) + "\n")
    seconds = max(time.monotonic() - started, 1e-9)
    print(f"spill: {len(where)} samples, {sum(offsets.values()) / 1e9:.2f} GB in {seconds:.1f} s", flush=True)
    return tables


def remove_spill(folder: Path) -> None:
    """A task's buckets, once its shards are written."""
    shutil.rmtree(folder, ignore_errors=True)


def remove_spills(scratch: Path, *, ours: bool) -> None:
    """Every spill under ``scratch`` (the array's, and any task's left by an earlier attempt with other
    settings), once the shard set is complete; ``scratch`` itself too when it is clusterdeck's own (``ours``)."""
    if not scratch.is_dir():
        return
    for folder in scratch.iterdir():
        if folder.is_dir() and (folder.name.startswith(("all-", "task-")) or "-task-" in folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    if ours:
        with suppress(OSError):
            scratch.rmdir()


_SPACE_HINT = "free some space, or set shard.scratch to a filesystem with room (it holds the input's bytes)"


def reading_spill(jobs: list[ShardJob], folder: Path, tables: dict[str, Table]) -> list[ShardJob]:
    """``jobs`` reading their samples from the spill in ``folder``."""
    return [replace(job, source=SpillSource(job.source, str(folder), tables[job.name])) for job in jobs]


def _digests(jobs: list[ShardJob]) -> list[str]:
    """One digest per shard, of what decides its samples: its name, source, permutation slice and the samples'
    places in the input (a repacked archive moves them)."""
    out = []
    for job in jobs:
        h = hashlib.sha256(f"{job.name}\0{job.source!r}\0{job.encoder!r}\0".encode())
        h.update(job.indices.tobytes())
        h.update(repr(job.locs).encode())  # where each sample lies in the input: a changed input is a new spill
        out.append(h.hexdigest())
    return out


def _save_tables(folder: Path, tables: dict[str, Table]) -> None:
    """One file per shard: an array task loads its own shards' tables, not all 13 M samples' (ImageNet-21K)."""
    import json

    folder.mkdir(exist_ok=True)
    for name, table in tables.items():
        path = folder / f"{name}.json"
        tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        tmp.write_text(json.dumps([[_key(loc), *where] for loc, where in table.items()]))
        os.replace(tmp, path)


def _load_table(path: Path) -> Table:
    import json

    return {_loc(r[0]): (r[1], r[2], r[3]) for r in json.loads(path.read_text())}


def _key(loc: Any) -> Any:
    return list(loc) if isinstance(loc, tuple) else loc


def _loc(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
