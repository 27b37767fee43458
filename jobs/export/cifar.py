"""CIFAR batches as an export pool: the npz pool's reads, over the batches read once into the export's temporary
folder (``cifarsource.inflate``, as the shard step does); ``split`` ``train``, ``val`` (CIFAR's test batch) or
``all``. The labels are the fine ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.export import ExportFailed
from clusterdeck.jobs.export.inputs import CHUNK_ROWS, NpzFile, NpzPool, _checked_offset, _class_count
from clusterdeck.jobs.formats.base import Key
from clusterdeck.jobs.shard.cifarsource import ROW, SIDE, Batch, CifarInput, inflate, read_split

SPLITS = {"train": ("train",), "val": ("test",), "all": ("train", "test")}
"""What ``export.split`` takes from CIFAR: its test batches are the val split."""


@dataclass
class CifarPool(NpzPool):
    input: CifarInput | None = None
    batches: list[tuple[str, str]] = field(default_factory=list)  # (split, batch) of each file
    first: np.ndarray = field(default_factory=lambda: np.zeros((0, ROW), np.uint8))  # rows to measure before open

    @property
    def inflate_bytes(self) -> int:
        return sum(f.rows * ROW for f in self.files if f.mapped is None)

    def open(self, cache: Path) -> None:
        """Reads the batches into ``cache`` as ``.npy`` rows, so that they are read in place as npz rows are."""
        assert self.input is not None
        folders: dict[str, Path] = {}
        for f, (split, name) in zip(self.files, self.batches, strict=True):
            if split not in folders:
                try:
                    folders[split] = inflate(self.input, split, "fine", cache)[1]
                except OSError as exc:
                    raise ExportFailed(f"{self.input.path}: cannot read the batches into {cache} ({exc})") from None
            f.mapped = folders[split] / f"{name}.npy"
            f.offset = _checked_offset(f.path, f.mapped)

    def _first_rows(self, count: int) -> np.ndarray:
        return self.first[:count].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)


def cifar_pool(inp: CifarInput, split: str, num_classes: int | None, key: Key) -> CifarPool:
    if split not in SPLITS:
        raise UserError(f"{key('split')}: a CIFAR input has 'train', 'val' (its test batches) or 'all', not {split!r}")
    files: list[NpzFile] = []
    batches: list[tuple[str, str]] = []
    first: list[np.ndarray] = []

    def keep_first(batch: Batch) -> None:
        if not first:
            first.append(batch.data[:CHUNK_ROWS].copy())

    names: list[str] = []
    for part in SPLITS[split]:
        read = read_split(inp, part, "fine", keep_first)
        names = read.names
        for name, labels in zip(read.files, read.labels, strict=True):
            files.append(NpzFile(Path(inp.where(name)), len(labels), labels, None))
            batches.append((part, name))
    classes = _class_count(len(names), num_classes, key, inp.path)
    return CifarPool(inp.path, files, SIDE, classes, names, "cifar", input=inp, batches=batches, first=first[0])
