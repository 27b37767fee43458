"""``cifar``: CIFAR-10 / CIFAR-100 python batches, the extracted folder or the downloaded ``.tar.gz``
(``jobs.shard.cifarsource``); ``split`` picks ``train`` (default) or ``test``, ``labels`` CIFAR-100's ``fine``
(default) or ``coarse`` set.

The classes are the meta file's label names in label order, so a shard's label is CIFAR's own (the names are
sorted in the originals anyway, so ``classes = K`` takes the first K either way). Rows become lossless PNGs.

``check`` runs on every load of a spec, so it reads at most the archive's first header; ``preflight`` (at submit)
unpickles the split and checks every batch, so a bad batch stops the submit, not the job.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats.base import ByteProgress, Fields, InputFormat, Key
from clusterdeck.jobs.shard.cifarsource import CIFAR10, ROW, SIDE, SPLITS, CifarInput, inflate, locate, read_split
from clusterdeck.jobs.shard.sources import Entries


class Cifar(InputFormat):
    name = "cifar"
    looks_like = "CIFAR python batches (cifar-10-batches-py/, cifar-100-python/ or their .tar.gz)"
    suffix = ".tar.gz"
    fields = ("split", "labels")
    exportable = True
    stored_as_is = False  # rows become PNGs

    def detect(self, path: Path) -> bool:
        return locate(path) is not None

    def check(self, path: Path, fields: Fields) -> None:
        super().check(path, fields)
        try:
            _split(fields)
            if path.exists():  # else not checked here (a spec read back where the input is not)
                _labels(_input(path), fields)
        except UserError as exc:
            raise ValueError(str(exc)) from None

    def preflight(self, path: Path, fields: Fields) -> None:
        inp = _input(path)
        read_split(inp, _split(fields), _labels(inp, fields))

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        from clusterdeck.jobs.shard.npzsource import NpzSource, map_data

        assert cache is not None, "cifar: the batches are read into the cache"
        inp = _input(path)
        split, folder = inflate(inp, _split(fields), _labels(inp, fields), cache)
        where = tuple(inp.where(name) for name in split.files)
        mapped = tuple(str(folder / f"{name}.npy") for name in split.files)
        for file, location, labels in zip(where, mapped, split.labels, strict=True):
            if len(map_data(Path(file), Path(location))) != len(labels):  # a damaged cached copy: found now
                raise UserError(f"{location}: not the rows of {file}; remove it and run again")
        entries = Entries(NpzSource(where, mapped, SIDE), [], [], [], list(split.names))
        for i, (name, labels) in enumerate(zip(split.files, split.labels, strict=True)):
            for row, label in enumerate(labels.tolist()):
                entries.add(f"{name}#{row}", (i, row), split.names[label])
        return entries

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        """The split's batches unpickled and checked, as the shard step reads them; nothing written."""
        from clusterdeck.jobs.formats.report import classes_summary, input_base, skipped_summary

        inp = _input(path)
        split_name, labels = _split(fields), _labels(inp, fields)
        split = read_split(inp, split_name, labels)
        counts = Counter(split.names[k] for found in split.labels for k in found.tolist())
        square = {"min": SIDE, "median": SIDE, "max": SIDE}
        return {
            **input_base(path, self.name),
            "images": split.rows,
            "bytes": split.rows * ROW,
            "classes": classes_summary(split.names, counts),
            "classes_note": None,
            "image_sizes": {"measured": split.rows, "unreadable": 0, "width": square, "height": dict(square)},
            "skipped": skipped_summary([]),
            "cifar": {"dataset": inp.dataset.title, "split": split_name, "labels": labels, "batches": split.files},
        }

    def export_pool(self, root: Path, split: str, num_classes: int | None, key: Key) -> Any:
        from clusterdeck.jobs.export.cifar import cifar_pool

        return cifar_pool(_input(root), split, num_classes, key)


def _input(path: Path) -> CifarInput:
    found = locate(path)
    if found is None:
        raise UserError(f"{path}: not {FORMAT.looks_like}")
    return found


def _split(fields: Fields) -> str:
    split = str(fields.get("split", "train"))
    if split not in SPLITS:
        raise UserError(f"split = {split!r}: a cifar input has 'train' or 'test'")
    return split


def _labels(inp: CifarInput, fields: Fields) -> str:
    """The label set to read: ``labels`` (CIFAR-100 only), else the fine one."""
    if "labels" in fields and inp.dataset is CIFAR10:
        raise UserError(
            f"labels = {fields['labels']!r}: {inp.path} is CIFAR-10, which has one set of labels "
            "(fine and coarse are CIFAR-100's)"
        )
    return str(fields.get("labels", "fine"))


FORMAT = Cifar()
