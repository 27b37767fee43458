"""What an export reads: npz batches or a shard set, as a pool of samples with a global index (``Pool``); the
input's format (``jobs.formats``) opens it.

``choose`` picks the samples: a seeded random subset of the pool, in a random order, the first
part train and the rest val. An npz pool writes them in exactly that order (rows are read
where they lie, a chunk at a time, sorted within a chunk so reads run forward). A shard
pool cannot seek to a sample, so it reads each shard once, front to back, its shards in a
seeded order, and writes the chosen samples in the order they come: the shard step has
already shuffled them globally.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import numpy as np
from PIL import Image

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.export import ExportFailed
from clusterdeck.jobs.export.images import Undecodable, fit_array, fit_image
from clusterdeck.jobs.export.ordered import in_order
from clusterdeck.jobs.formats.base import Key
from clusterdeck.jobs.shard.npzsource import data_location, data_member, data_span, npy_header, read_batches
from clusterdeck.jobs.train.shardset import Shard, ShardReadError, check_files, read_shardset

CHUNK_ROWS = 256
CHUNK_VALUES = 1 << 22
"""A chunk, the samples read, resized and written together (the unit of the memory bound), holds at most
``CHUNK_ROWS`` images and, of larger ones, as many as fit in this many pixel values (4 MB as uint8)."""


def chunk_rows(side: int) -> int:
    return max(1, min(CHUNK_ROWS, CHUNK_VALUES // (3 * side * side)))


@dataclass(frozen=True)
class Choice:
    """Global pool indices of the chosen samples, train then val, each in a random order."""

    train: np.ndarray
    val: np.ndarray


def split_sizes(samples: int, val_fraction: float) -> tuple[int, int]:
    val = math.floor(samples * val_fraction + 0.5)
    return samples - val, val


def choose(pool_size: int, samples: int, val_fraction: float, seed: int) -> Choice:
    chosen = np.random.default_rng(seed).choice(pool_size, samples, replace=False)
    train, _ = split_sizes(samples, val_fraction)
    return Choice(chosen[:train], chosen[train:])


@dataclass
class Chunk:
    pixels: np.ndarray  # uint8, n × S × S × 3
    labels: np.ndarray  # int64, n, 0-based
    val: np.ndarray  # bool, n: the row goes to the val files


class Pool(Protocol):
    """What an export reads, as its input's format opens it (``InputFormat.export_pool``): npz batches, a shard
    set's split."""

    kind: str
    classes: int  # the one-hot width
    class_names: list[str]

    @property
    def size(self) -> int:
        """Samples in the pool."""
        ...

    @property
    def inflate_bytes(self) -> int:
        """Temporary bytes ``open`` writes (a compressed npz ``data``, inflated)."""
        ...

    def open(self, cache: Path) -> None:
        """Makes the samples readable, writing temporary files into ``cache`` if it must."""
        ...

    def sample_rows(self, count: int, seed: int, size: int, fit: str) -> np.ndarray:
        """A seeded sample of ``count`` rows at the export size, to measure."""
        ...

    def chunks(self, choice: Choice, size: int, fit: str, workers: int, seed: int) -> Iterator[Chunk]:
        """The chosen samples, fitted, a chunk at a time: the train ones, then the val ones."""
        ...


@dataclass
class NpzFile:
    path: Path
    rows: int
    labels: np.ndarray  # 0-based
    mapped: Path | None  # where the rows are read from: the .npz itself when stored, an inflated copy once opened
    offset: int = 0


@dataclass
class NpzPool:
    """Downsampled-ImageNet batches: rows read with ``pread`` from the .npz (or an inflated copy) where they lie."""

    root: Path
    files: list[NpzFile]
    side: int
    classes: int
    class_names: list[str]
    kind: str = "npz"
    _starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # every file's, one after another

    def __post_init__(self) -> None:
        self._starts = np.cumsum([0] + [f.rows for f in self.files])
        self._labels = np.concatenate([f.labels for f in self.files])

    @property
    def size(self) -> int:
        return int(self._starts[-1])

    @property
    def inflate_bytes(self) -> int:
        """Bytes a compressed ``data`` takes once inflated (into a temporary directory while exporting)."""
        return sum(f.rows * 3 * self.side * self.side for f in self.files if f.mapped is None)

    def open(self, cache: Path) -> None:
        """Inflates every compressed ``data`` into ``cache``, so that its rows can be read in place."""
        for f in self.files:
            if f.mapped is None:
                try:
                    f.mapped = data_location(f.path, cache)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise UserError(f"{f.path}: its compressed 'data' is damaged ({exc})") from None
                except OSError as exc:
                    raise ExportFailed(f"{f.path}: cannot inflate 'data' into {cache} ({exc})") from None
                f.offset = _checked_offset(f.path, f.mapped)

    def labels_of(self, indices: np.ndarray) -> np.ndarray:
        return self._labels[indices]

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (in that order) as uint8 n × S × S × 3, read in index order."""
        width = 3 * self.side * self.side
        out = np.empty((len(indices), width), np.uint8)
        file = np.searchsorted(self._starts, indices, side="right") - 1
        fds: dict[int, int] = {}
        try:
            for k in np.argsort(indices, kind="stable").tolist():
                f = self.files[file[k]]
                assert f.mapped is not None, f"{f.path}: compressed; NpzPool.open() first"
                fd = fds.get(file[k])
                if fd is None:
                    fd = fds[file[k]] = os.open(f.mapped, os.O_RDONLY)
                at = f.offset + (int(indices[k]) - int(self._starts[file[k]])) * width
                if os.preadv(fd, [out[k]], at) != width:
                    raise UserError(f"{f.path}: 'data' ends early (row {int(indices[k]) - int(self._starts[file[k]])})")
        finally:
            for fd in fds.values():
                os.close(fd)
        return out.reshape(-1, 3, self.side, self.side).transpose(0, 2, 3, 1)

    def sample_rows(self, count: int, seed: int, size: int, fit: str) -> np.ndarray:
        """A seeded sample of rows at the export size, to measure; nothing is inflated (a compressed
        ``data`` gives its first rows, read through the zip)."""
        readable = [k for k, f in enumerate(self.files) if f.mapped is not None]
        if readable:
            pool = np.concatenate([np.arange(self._starts[k], self._starts[k + 1]) for k in readable])
            rows = self.rows(np.random.default_rng([seed, 2]).choice(pool, min(count, len(pool)), replace=False))
        else:
            rows = self._first_rows(count)
        return resize_all(rows, size, fit)

    def _first_rows(self, count: int) -> np.ndarray:
        f = self.files[0]
        width = 3 * self.side * self.side
        try:
            with zipfile.ZipFile(f.path) as z, z.open("data.npy") as stream:
                npy_header(cast(BinaryIO, stream), str(f.path))
                data = stream.read(min(count, f.rows) * width)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise UserError(f"{f.path}: its compressed 'data' is damaged ({exc})") from None
        rows = np.frombuffer(data, np.uint8)[: len(data) // width * width]
        return rows.reshape(-1, 3, self.side, self.side).transpose(0, 2, 3, 1)

    def chunks(self, choice: Choice, size: int, fit: str, workers: int, seed: int) -> Iterator[Chunk]:
        rows = chunk_rows(max(self.side, size))
        for indices, is_val in ((choice.train, False), (choice.val, True)):
            for start in range(0, len(indices), rows):
                part = indices[start : start + rows]
                pixels = resize_all(self.rows(part), size, fit)
                yield Chunk(pixels, self.labels_of(part), np.full(len(part), is_val))


def _checked_offset(path: Path, mapped: Path) -> int:
    offset, (rows, width) = data_span(path, mapped)
    have = mapped.stat().st_size
    if have < offset + rows * width:
        raise UserError(f"{path}: 'data' is truncated ({have} bytes where {offset + rows * width} are needed)")
    return offset


def resize_all(pixels: np.ndarray, size: int, fit: str) -> np.ndarray:
    if pixels.shape[1] == size and pixels.shape[2] == size:
        return np.ascontiguousarray(pixels)
    return np.stack([fit_array(Image.fromarray(np.ascontiguousarray(p)), size, fit) for p in pixels])


def npz_pool(root: Path, split: str, num_classes: int | None, key: Key) -> NpzPool:
    batches = read_batches(root, None)
    files = []
    for path, labels in zip(batches.files, batches.labels, strict=True):
        wanted = root.is_file() or split == "all" or (split == "val") == path.name.startswith("val")
        if wanted:
            stored = data_member(path)[0].compress_type == zipfile.ZIP_STORED
            files.append(NpzFile(path, len(labels), labels - 1, path if stored else None))
            if stored:
                files[-1].offset = _checked_offset(path, path)
    if not files:
        kind = "val*.npz" if split == "val" else "non-val .npz"
        raise UserError(f"{key('split')}: {root} has no {kind} files for split {split!r}")
    classes = _class_count(len(batches.names), num_classes, key, root)
    return NpzPool(root, files, batches.side, classes, batches.names)


def _class_count(found: int, given: int | None, key: Key, root: Path) -> int:
    if given is None:
        return found
    if given < found:
        raise UserError(f"{key('num_classes')}: {given}, but {root} has {found} classes")
    return given


@dataclass(frozen=True)
class ShardTask:
    shard: Shard
    positions: np.ndarray  # sorted positions in the shard
    val: np.ndarray  # bool per position
    size: int
    fit: str
    classes: int


def decode_task(task: ShardTask) -> Iterator[Chunk]:
    """The chosen samples of one shard, decoded and fitted, a chunk at a time."""
    from clusterdeck.jobs.train.shardread import image_of, read_shard

    wanted = iter(task.positions.tolist())
    target = next(wanted, None)
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    done = 0
    try:
        for position, sample in enumerate(read_shard(task.shard)):
            if position != target:
                continue
            where = f"sample {sample['__key__']} of shard {task.shard.path}"
            try:
                pixels.append(fit_image(image_of(sample), task.size, task.fit))
                label = int(sample.get("cls", b""))
            except Undecodable as exc:
                raise UserError(f"{where}: cannot decode the image ({exc})") from None
            except ValueError:
                raise UserError(f"{where}: no integer class ('cls' member)") from None
            if not 0 <= label < task.classes:
                raise UserError(f"{where}: class {label} is outside 0..{task.classes - 1}")
            labels.append(label)
            target = next(wanted, None)
            if len(pixels) == chunk_rows(task.size) or target is None:
                yield Chunk(np.stack(pixels), np.array(labels), task.val[done : done + len(pixels)])
                done += len(pixels)
                pixels, labels = [], []
            if target is None:
                return
    except ShardReadError as exc:
        raise UserError(str(exc)) from None
    raise UserError(f"shard {task.shard.path}: holds fewer samples than its index says ({task.shard.samples})")


@dataclass
class ShardPool:
    """A shard set's split: each shard read once, front to back, its chosen samples decoded by worker processes."""

    root: Path
    shards: list[Shard]
    classes: int
    class_names: list[str]
    kind: str = "shards"
    inflate_bytes: int = 0

    @property
    def size(self) -> int:
        return sum(s.samples for s in self.shards)

    def open(self, cache: Path) -> None:
        pass

    def tasks(self, choice: Choice, size: int, fit: str, seed: int) -> list[ShardTask]:
        starts = np.cumsum([0] + [s.samples for s in self.shards])
        chosen = np.concatenate([choice.train, choice.val])
        is_val = np.concatenate([np.zeros(len(choice.train), bool), np.ones(len(choice.val), bool)])
        order = np.argsort(chosen, kind="stable")
        chosen, is_val = chosen[order], is_val[order]
        bounds = np.searchsorted(chosen, starts)  # chosen[bounds[k]:bounds[k + 1]] lie in shard k
        tasks = []
        for k in np.random.default_rng([seed, 1]).permutation(len(self.shards)).tolist():
            first, end = int(bounds[k]), int(bounds[k + 1])
            if end > first:
                positions = chosen[first:end] - starts[k]
                tasks.append(ShardTask(self.shards[k], positions, is_val[first:end], size, fit, self.classes))
        return tasks

    def sample_rows(self, count: int, seed: int, size: int, fit: str) -> np.ndarray:
        """The first ``count`` samples of seeded shards, decoded and fitted, to measure."""
        rows: list[np.ndarray] = []
        for k in np.random.default_rng([seed, 2]).permutation(len(self.shards)).tolist():
            shard = self.shards[k]
            take = min(count - len(rows), shard.samples)
            task = ShardTask(shard, np.arange(take), np.zeros(take, bool), size, fit, self.classes)
            for chunk in decode_task(task):
                rows.extend(chunk.pixels)
            if len(rows) >= count:
                break
        return np.stack(rows)

    def chunks(self, choice: Choice, size: int, fit: str, workers: int, seed: int) -> Iterator[Chunk]:
        yield from in_order(decode_task, self.tasks(choice, size, fit, seed), workers)


def shard_pool(root: Path, split: str, num_classes: int | None, key: Key) -> ShardPool:
    shard_set = read_shardset(root, key("input"))
    if split == "all":
        shards = [s for name in sorted(shard_set.splits) for s in shard_set.splits[name]]
    else:
        shards = shard_set.split(split, key("split"))
    check_files(shards, key("input"))
    classes = _class_count(len(shard_set.classes), num_classes, key, root)
    return ShardPool(root, shards, classes, shard_set.classes)
