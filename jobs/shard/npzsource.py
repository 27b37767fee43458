"""Downsampled-ImageNet batches (``train_data_batch_*.npz``, ``val_data.npz``) as a sample source.

Each file holds ``data``, N×(3·S·S) uint8 with the colour planes one after another (all R,
then all G, then all B, each row-major), and ``labels``, 1-based. S is inferred from the
row length. ``np.savez`` stores its arrays uncompressed inside the zip, so ``data`` is
memory-mapped where it lies and a writer reads only the rows it needs; a compressed
``data`` (``np.savez_compressed``) is inflated once into the shard set's ``.sources``
directory and mapped from there.

Classes are named by the ``synsets`` file when given (one wnid per label, in label order,
as ``map_clsloc.txt``), else by the label number, zero-padded so that sorting keeps the
number order: ``0001`` … ``1000``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import socket
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.sources import Entries, read_synsets

_arrays: dict[str, np.ndarray] = {}  # path -> its mapped data, per process (inherited across fork)
_ZIP_LOCAL_HEADER = 30


@dataclass(frozen=True)
class NpzSource:
    files: tuple[str, ...]
    mapped: tuple[str, ...]  # where each file's data is mapped from: the file itself, or an inflated .npy
    side: int

    def raw_size(self, loc: tuple[int, int]) -> None:
        return None  # rows become PNGs or JPEGs: their size is known only once encoded

    def read(self, loc: tuple[int, int]) -> np.ndarray:
        """Row ``row`` of file ``file`` as an S×S×3 array."""
        file, row = loc
        data = _arrays.get(self.mapped[file])
        if data is None:
            data = _arrays[self.mapped[file]] = map_data(Path(self.files[file]), Path(self.mapped[file]))
        return np.ascontiguousarray(np.asarray(data[row]).reshape(3, self.side, self.side).transpose(1, 2, 0))


def npz_files(path: Path) -> list[Path]:
    """A .npz file, or every .npz in a directory in natural order (batch_2 before batch_10)."""
    if path.is_file():
        return [path]
    files = [p for p in path.iterdir() if p.suffix == ".npz" and p.is_file()]
    if not files:
        raise UserError(f"{path}: no .npz files")
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def side_of(columns: int, where: str) -> int:
    side = math.isqrt(columns // 3)
    if columns <= 0 or 3 * side * side != columns:
        raise UserError(f"{where}: rows of {columns} values are not 3·S·S for any S (expected e.g. 3072 for 32×32)")
    return side


def data_member(path: Path) -> tuple[zipfile.ZipInfo, int]:
    """The zip entry of ``data.npy`` and the offset of its bytes in the file."""
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("data.npy")
    except KeyError:
        raise UserError(f"{path}: no 'data' array (expected downsampled-ImageNet batches)") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path}: not a readable .npz ({exc})") from None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_ZIP_LOCAL_HEADER)
    if len(header) < _ZIP_LOCAL_HEADER or not header.startswith(b"PK\x03\x04"):
        raise UserError(f"{path}: damaged .npz (no zip entry where the directory says 'data.npy' is)")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info, info.header_offset + _ZIP_LOCAL_HEADER + name_len + extra_len


def npy_header(f: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, offset of the array's bytes) of the .npy that starts at ``f``'s position."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except ValueError as exc:
        raise UserError(f"{where}: 'data' is not a .npy array ({exc})") from None
    return shape, fortran, dtype, f.tell()


def data_location(path: Path, cache: Path) -> Path:
    """Where ``path``'s data can be mapped from: the .npz itself when stored, else an inflated copy in ``cache``."""
    info, _ = data_member(path)
    if info.compress_type == zipfile.ZIP_STORED:
        return path
    st = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    inflated = cache / f"{path.stem}-{tag}-data.npy"
    if not inflated.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = inflated.with_name(f".{inflated.name}.tmp-{socket.gethostname()}-{os.getpid()}")  # tasks on many nodes
        try:
            with zipfile.ZipFile(path) as z, z.open("data.npy") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
            os.replace(tmp, inflated)
        finally:
            tmp.unlink(missing_ok=True)
    return inflated


def data_span(path: Path, mapped: Path) -> tuple[int, tuple[int, int]]:
    """(offset, shape) of ``path``'s ``data`` rows in ``mapped`` (the .npz itself, or its inflated .npy)."""
    start = data_member(path)[1] if mapped == path else 0
    with open(mapped, "rb") as f:
        f.seek(start)
        shape, fortran, dtype, offset = npy_header(f, str(path))
    if dtype != np.uint8 or len(shape) != 2 or fortran:
        raise UserError(f"{path}: 'data' is {dtype} {shape}; expected a C-ordered N×(3·S·S) uint8 array")
    return offset, (shape[0], shape[1])


def map_data(path: Path, mapped: Path) -> np.ndarray:
    """``data`` of ``path`` memory-mapped from ``mapped`` (the .npz itself, or its inflated .npy)."""
    offset, shape = data_span(path, mapped)
    try:
        return np.memmap(mapped, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    except ValueError as exc:  # shorter than its header says
        raise UserError(f"{path}: 'data' is truncated ({exc})") from None


def read_labels(path: Path) -> np.ndarray:
    try:
        with np.load(path) as z:
            return np.asarray(z["labels"]).astype(np.int64).reshape(-1)
    except KeyError:
        raise UserError(f"{path}: no 'labels' array") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz ({exc})") from None


def _data_shape(path: Path) -> tuple[int, int]:
    """``data``'s (rows, columns) from its .npy header, read through the zip: nothing inflated but the header."""
    info, _ = data_member(path)
    try:
        with zipfile.ZipFile(path) as z, z.open(info) as stream:
            shape, fortran, dtype, _ = npy_header(cast(BinaryIO, stream), str(path))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise UserError(f"{path}: not a readable .npz ({exc})") from None
    if dtype != np.uint8 or len(shape) != 2 or fortran:
        raise UserError(f"{path}: 'data' is {dtype} {shape}; expected a C-ordered N×(3·S·S) uint8 array")
    return shape[0], shape[1]


@dataclass(frozen=True)
class Batches:
    """The batches of an npz input, checked: one image size, a label per row, labels in range."""

    files: list[Path]
    labels: list[np.ndarray]  # 1-based, per file
    side: int
    names: list[str]  # class name of label k at index k - 1
    classes: list[str]  # every class: all the synsets' when given, else the labels seen; sorted

    @property
    def rows(self) -> int:
        return sum(len(labels) for labels in self.labels)


def read_batches(path: Path, synsets: Path | None) -> Batches:
    files = npz_files(path)
    given = read_synsets(synsets) if synsets is not None else None
    side: int | None = None
    per_file = []
    for f in files:
        rows, columns = _data_shape(f)
        labels = read_labels(f)
        if len(labels) != rows:
            raise UserError(f"{f}: {len(labels)} labels for {rows} images")
        s = side_of(columns, str(f))
        if side is not None and s != side:
            raise UserError(f"{f}: {s}×{s} images, but {files[0]} holds {side}×{side}")
        side = s
        if len(labels) and (labels.min() < 1 or (given is not None and labels.max() > len(given))):
            bad = int(labels.min()) if labels.min() < 1 else int(labels.max())
            top = f"1..{len(given)} (the lines of {synsets})" if given is not None else "1 or more"
            raise UserError(f"{f}: label {bad} is outside {top}; labels are 1-based")
        per_file.append(labels)
    assert side is not None
    highest = max((int(labels.max()) for labels in per_file if len(labels)), default=0)
    names = given if given is not None else label_names(highest)
    seen = {names[k - 1] for labels in per_file for k in np.unique(labels).tolist()}
    return Batches(files, per_file, side, names, sorted(names) if given is not None else sorted(seen))


def label_names(count: int) -> list[str]:
    """Class names of labels 1..count without synsets, zero-padded so that sorting keeps the number order."""
    width = max(4, len(str(count)))
    return [f"{k:0{width}d}" for k in range(1, count + 1)]


def list_npz(path: Path, synsets: Path | None, cache: Path) -> Entries:
    """Every row of every batch, in file then row order, named ``<file>#<row>``."""
    batches = read_batches(path, synsets)
    mapped = tuple(str(data_location(f, cache)) for f in batches.files)
    source = NpzSource(tuple(str(f) for f in batches.files), mapped, batches.side)
    for f, location in zip(batches.files, mapped, strict=True):
        map_data(f, Path(location))  # a damaged inflated copy is found now, not in every writer
    entries = Entries(source, [], [], [], batches.classes)
    for i, (f, labels) in enumerate(zip(batches.files, batches.labels, strict=True)):
        for row, label in enumerate(labels.tolist()):
            entries.add(f"{f.name}#{row}", (i, row), batches.names[label - 1])
    return entries
