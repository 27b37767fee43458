"""CIFAR-10 and CIFAR-100 python batches, read from the extracted folder or from the downloaded ``.tar.gz``.

Each batch is a pickled dict (Python 2, protocol 2, bytes keys): ``data`` N×3072 uint8, the colour planes one
after another (all R, then G, then B, each 32×32 row-major), as the npz batches; ``labels`` (CIFAR-10) or
``fine_labels`` and ``coarse_labels`` (CIFAR-100), 0-based; ``filenames``. ``batches.meta`` / ``meta`` names the
labels in label order. The pickles are loaded by an unpickler that builds plain values and uint8 arrays only (see
``ALLOWED``): a pickle that asks for anything else is refused, never run.

A pickle cannot be read a row at a time, and a ``.tar.gz`` not at all out of order, so the shard step reads the
split once (``inflate``) into its cache: one ``<batch>.npy`` of rows per batch, which writers memory-map as they
map npz data (``NpzSource``), and a ``listing.json`` of labels, written into a temporary folder renamed into
place, so the tasks of an array share it and a killed one leaves nothing half-made that counts.

A sample is named ``<batch>#<row>``, as npz rows are: unique and pointing at its row. The batches'
``filenames`` (the Tiny Images names) point nowhere, and nothing promises that they are unique.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import os
import pickle
import re
import shutil
import socket
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from clusterdeck.jobs.errors import UserError

SIDE = 32
ROW = 3 * SIDE * SIDE
SPLITS = ("train", "test")
ARCHIVES = (".tar.gz", ".tgz")
LISTING = "listing.json"


@dataclass(frozen=True)
class Dataset:
    """One of the two layouts: its folder in the download, its meta file, and the pickles' keys per label set."""

    title: str
    top: str
    meta: str
    train: re.Pattern[str]
    test: str
    label_keys: dict[str, str]
    name_keys: dict[str, str]

    def wanted(self, split: str, name: str) -> bool:
        return bool(self.train.fullmatch(name)) if split == "train" else name == self.test


CIFAR10 = Dataset(
    "CIFAR-10",
    "cifar-10-batches-py",
    "batches.meta",
    re.compile(r"data_batch_\d+"),
    "test_batch",
    {"fine": "labels"},
    {"fine": "label_names"},
)
CIFAR100 = Dataset(
    "CIFAR-100",
    "cifar-100-python",
    "meta",
    re.compile(r"train"),
    "test",
    {"fine": "fine_labels", "coarse": "coarse_labels"},
    {"fine": "fine_label_names", "coarse": "coarse_label_names"},
)
DATASETS = {d.top: d for d in (CIFAR10, CIFAR100)}


@dataclass(frozen=True)
class CifarInput:
    """Where the batches are: a folder of them, or the download's archive; ``where(name)`` names one in errors."""

    path: Path
    dataset: Dataset
    archive: bool

    def where(self, name: str) -> str:
        return f"{self.path}:{self.dataset.top}/{name}" if self.archive else str(self.path / name)


def locate(path: Path) -> CifarInput | None:
    """``path`` as CIFAR batches (reading at most the archive's first header), or None."""
    if path.is_file():
        return _archive(path) if path.name.lower().endswith(ARCHIVES) else None
    if not path.is_dir():
        return None
    if (path / CIFAR10.meta).is_file():
        return CifarInput(path, CIFAR10, False)
    if (path / CIFAR100.meta).is_file() and ((path / "train").is_file() or (path / "test").is_file()):
        return CifarInput(path, CIFAR100, False)
    inside = [path / top for top in DATASETS if (path / top).is_dir()]  # torchvision's root: the download extracted
    if len(inside) > 1:
        raise UserError(f"{path}: holds both {' and '.join(p.name for p in inside)}; name one of them as the input")
    return locate(inside[0]) if inside else None


def _archive(path: Path) -> CifarInput | None:
    try:
        with tarfile.open(path, "r|gz") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return None
    top = first.name.removeprefix("./").split("/")[0] if first is not None else ""
    return CifarInput(path, DATASETS[top], True) if top in DATASETS else None


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray or tuple(shape) != (0,):  # numpy pickles an empty array, filled by its state
        raise pickle.UnpicklingError("an array made otherwise than numpy pickles one")
    return cast(np.ndarray, np.ndarray.__new__(np.ndarray, shape, dtype))


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 pickles bytes under protocol 2: the only use of ``_codecs.encode`` let through."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode to {encoding!r}")
    return text.encode("latin1")


ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # the originals (numpy 1, Python 2)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # re-pickled with numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}
"""What a CIFAR pickle may name: numpy arrays and the bytes of Python 3's protocol 2; nothing that runs code."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}")
        return found


_UNREADABLE = (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError, MemoryError)
_DAMAGED = (tarfile.TarError, EOFError, zlib.error, OSError)


class _Damaged(Exception):
    """The archive failed under a member being unpickled: the archive's fault, not the pickle's."""


class _Guarded:
    """An archive member as the unpickler reads it, its stream's errors raised as ``_Damaged``."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def read(self, size: int = -1) -> bytes:
        return self._guard(self.f.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._guard(self.f.readline, size)

    def _guard(self, reader: Callable[[int], bytes], size: int) -> bytes:
        try:
            return reader(size)
        except _DAMAGED as exc:
            raise _Damaged(f"{type(exc).__name__}: {exc}") from None


def load_pickle(f: BinaryIO, where: str) -> dict[str, Any]:
    """A pickled dict with its keys as text; UserError naming ``where`` if it is anything else."""
    try:
        loaded = _Restricted(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{where}: not a CIFAR pickle ({exc}; only arrays and plain values are loaded)") from None
    except _UNREADABLE as exc:
        raise UserError(f"{where}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{where}: a pickled {type(loaded).__name__}, not a CIFAR batch (a dict with 'data')")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in loaded.items()}


@dataclass
class Batch:
    name: str
    data: np.ndarray  # N×3072 uint8
    labels: np.ndarray  # int64, N


@dataclass
class Split:
    """A split's batches, checked, in canonical order (``data_batch_1`` … by number), with the label names."""

    input: CifarInput
    files: list[str]
    labels: list[np.ndarray]
    names: list[str]

    @property
    def rows(self) -> int:
        return sum(len(labels) for labels in self.labels)


def _batch(loaded: dict[str, Any], name: str, where: str, key: str) -> Batch:
    data = loaded.get("data")
    if data is None:
        raise UserError(f"{where}: no 'data' (not a CIFAR batch; it holds {', '.join(sorted(loaded)) or 'nothing'})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{where}: 'data' is {what}; a CIFAR batch holds N×{ROW} uint8 rows")
    if data.shape[1] != ROW:
        raise UserError(f"{where}: rows of {data.shape[1]} values; CIFAR rows are {ROW} (32×32, the planes R, G, B)")
    if key not in loaded:
        raise UserError(f"{where}: no '{key}' (not a CIFAR batch of this layout)")
    try:
        labels = np.asarray(loaded[key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{where}: '{key}' are not whole numbers") from None
    if len(labels) != len(data):
        raise UserError(f"{where}: {len(labels)} labels for {len(data)} images")
    return Batch(name, data, labels)


def _names(loaded: dict[str, Any], where: str, key: str) -> list[str]:
    names = loaded.get(key)
    if not isinstance(names, list) or not names:
        raise UserError(f"{where}: no '{key}' list (not a CIFAR meta file)")
    text = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    twice = next((n for n in text if text.count(n) > 1), None)
    if twice is not None:
        raise UserError(f"{where}: the label name {twice!r} is listed twice")
    return text


def _pickles(inp: CifarInput, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, loaded dict) of the split's batches and the meta file: a folder's in name order, an archive's in
    its own order, streamed once."""
    ds = inp.dataset
    if not inp.archive:
        try:
            found = sorted(e.name for e in os.scandir(inp.path) if e.is_file())
        except OSError as exc:
            raise UserError(f"{inp.path}: cannot read ({exc.strerror or exc})") from None
        for name in (n for n in found if n == ds.meta or ds.wanted(split, n)):
            try:
                with open(inp.path / name, "rb") as f:
                    loaded = load_pickle(f, inp.where(name))
            except OSError as exc:
                raise UserError(f"{inp.where(name)}: cannot read ({exc.strerror or exc})") from None
            yield name, loaded
        return
    try:
        with gzip.open(inp.path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                top, _, name = member.name.removeprefix("./").partition("/")
                if member.isfile() and top == ds.top and (name == ds.meta or ds.wanted(split, name)):
                    f = tar.extractfile(member)
                    assert f is not None
                    yield name, load_pickle(cast(BinaryIO, _Guarded(f)), inp.where(name))
            while gz.read(1 << 20):  # to its end, where gzip checks the length and CRC: a cut archive fails there
                pass
    except _Damaged as exc:
        raise UserError(f"{inp.path}: truncated or damaged archive ({exc})") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(f"{inp.path}: truncated or damaged archive ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise UserError(f"{inp.path}: cannot read ({exc.strerror or exc})") from None


def read_split(inp: CifarInput, split: str, labels: str, on_batch: Callable[[Batch], None] = lambda b: None) -> Split:
    """Reads and checks ``split``'s batches, giving each to ``on_batch`` as it is read (then dropped), and the
    split's listing: labels per batch in canonical order, named by the meta file."""
    ds = inp.dataset
    key, name_key = ds.label_keys[labels], ds.name_keys[labels]
    per_file: dict[str, np.ndarray] = {}
    names: list[str] | None = None
    for name, loaded in _pickles(inp, split):
        if name == ds.meta:
            names = _names(loaded, inp.where(name), name_key)
            continue
        batch = _batch(loaded, name, inp.where(name), key)
        del loaded
        on_batch(batch)
        per_file[name] = batch.labels
    if names is None:
        raise UserError(f"{inp.where(ds.meta)}: missing (the label names)")
    if not per_file:
        expected = "data_batch_1 …" if ds is CIFAR10 and split == "train" else ds.test if split == "test" else "train"
        raise UserError(f"{inp.path}: no {split} batches of {ds.title} ({expected})")
    files = sorted(per_file, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])
    for name in files:
        found = per_file[name]
        if len(found) and (found.min() < 0 or found.max() >= len(names)):
            bad = int(found.min()) if found.min() < 0 else int(found.max())
            raise UserError(f"{inp.where(name)}: label {bad} is outside the {len(names)} names of {ds.meta}")
    return Split(inp, files, [per_file[n] for n in files], names)


def inflate(inp: CifarInput, split: str, labels: str, cache: Path) -> tuple[Split, Path]:
    """``split`` read once into ``cache`` (``<batch>.npy`` rows and the listing), or found there from before."""
    folder = cache / f"{inp.dataset.top}-{split}-{labels}-{_tag(inp)}"
    if not (folder / LISTING).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{folder.name}.tmp-{socket.gethostname()}-{os.getpid()}"  # tasks on many nodes
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            read = read_split(inp, split, labels, lambda batch: np.save(tmp / f"{batch.name}.npy", batch.data))
            listing = {"files": read.files, "labels": [x.tolist() for x in read.labels], "names": read.names}
            (tmp / LISTING).write_text(json.dumps(listing))
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / LISTING).is_file():  # not another task's copy, finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    listing = json.loads((folder / LISTING).read_text())
    found = [np.asarray(x, dtype=np.int64) for x in listing["labels"]]
    return Split(inp, listing["files"], found, listing["names"]), folder


def _tag(inp: CifarInput) -> str:
    """Changes when the input does: its path, and the size and time of the archive or of each file in the folder."""
    files = [inp.path] if inp.archive else sorted(p for p in inp.path.iterdir() if p.is_file())
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps([str(inp.path.resolve()), stats]).encode()).hexdigest()[:16]
