"""CIFAR-10 / CIFAR-100 python batches, as the download holds them, with learnable classes (no download needed).

Layout, as ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` and their extracted folders::

    ROOT/cifar-10-batches-py/data_batch_1 … data_batch_5, test_batch, batches.meta, readme.html
    ROOT/cifar-100-python/train, test, meta
    ROOT/cifar-10-python.tar.gz              the folder, members in the download's (unsorted) order

Each file is a pickled dict as Python 2's cPickle wrote the originals (protocol 2, every string a byte string,
arrays by ``numpy.core.multiarray._reconstruct``): ``data`` N×3072 uint8 (planes R, G, B), the labels (0-based)
and ``filenames``; so Python 3 reads it, as the originals, with ``encoding="bytes"`` or ``"latin1"``. An image
is a class's shape in its colour family over a textured background, drawn as the npz batches' images are.
"""

from __future__ import annotations

import pickle
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clusterdeck.jobs.sample_data import _pixels

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = 5


@dataclass(frozen=True)
class CifarData:
    root: Path
    folder: Path  # cifar-10-batches-py or cifar-100-python
    archive: Path
    names: list[str]  # the (fine) label names, in label order
    coarse_names: list[str]  # CIFAR-100's; empty for CIFAR-10

    @property
    def classes(self) -> int:
        return len(self.names)

    def batch_files(self, split: str) -> list[Path]:
        """The split's batches in canonical order."""
        if self.classes == 10:
            batches = [f"data_batch_{k}" for k in range(1, TRAIN_BATCHES + 1)] if split == "train" else ["test_batch"]
        else:
            batches = [split]
        return [self.folder / b for b in batches]


def make_cifar(root: Path, classes: int = 10, per_class: int = 20, test_per_class: int = 5, seed: int = 0) -> CifarData:
    """CIFAR-10 (``classes=10``) or CIFAR-100 (``classes=100``): ``per_class`` train and ``test_per_class`` test
    images of each class, classes mixed within every batch, and the download's ``.tar.gz`` of the folder."""
    if classes not in (10, 100):
        raise ValueError(f"classes: 10 or 100, not {classes}")
    rng = np.random.default_rng(seed)
    ten = classes == 10
    top = "cifar-10-batches-py" if ten else "cifar-100-python"
    folder = root / top
    folder.mkdir(parents=True, exist_ok=True)
    names = list(CIFAR10_NAMES) if ten else [f"fine_{k:02d}" for k in range(100)]
    coarse_names = [] if ten else [f"coarse_{k:02d}" for k in range(20)]
    coarse_of = rng.permutation(np.repeat(np.arange(20), 5))  # 5 fine classes to each, not contiguous ones

    def batch(labels: np.ndarray, label: str, start: int) -> dict[bytes, object]:
        data = np.stack([_pixels(rng, int(k), classes, 32).transpose(2, 0, 1).reshape(-1) for k in labels])
        files = [f"{names[k]}_s_{start + i:06d}.png".encode() for i, k in enumerate(labels.tolist())]
        if ten:
            return {b"batch_label": label.encode(), b"labels": labels.tolist(), b"data": data, b"filenames": files}
        coarse = coarse_of[labels].tolist()
        return {
            b"filenames": files,
            b"batch_label": label.encode(),
            b"fine_labels": labels.tolist(),
            b"coarse_labels": coarse,
            b"data": data,
        }

    train = rng.permutation(np.repeat(np.arange(classes), per_class))
    test = rng.permutation(np.repeat(np.arange(classes), test_per_class))
    written: dict[str, dict[bytes, object]] = {}
    if ten:
        for k, part in enumerate(np.array_split(train, TRAIN_BATCHES), start=1):
            written[f"data_batch_{k}"] = batch(part, f"training batch {k} of {TRAIN_BATCHES}", k * 100_000)
        written["test_batch"] = batch(test, "testing batch 1 of 1", 0)
        written["batches.meta"] = {b"num_cases_per_batch": len(train) // 5, b"label_names": _b(names), b"num_vis": 3072}
    else:
        written["train"] = batch(train, "training batch 1 of 1", 100_000)
        written["test"] = batch(test, "testing batch 1 of 1", 0)
        written["meta"] = {b"fine_label_names": _b(names), b"coarse_label_names": _b(coarse_names)}
    for name, content in written.items():
        with open(folder / name, "wb") as f:
            _Py2Pickler(f, protocol=2).dump(content)
    if ten:
        (folder / "readme.html").write_text("<html>CIFAR-10, synthetic</html>\n")
    archive = root / ("cifar-10-python.tar.gz" if ten else "cifar-100-python.tar.gz")
    _write_archive(archive, folder, _download_order(sorted(p.name for p in folder.iterdir())))
    return CifarData(root, folder, archive, names, coarse_names)


class _Py2Pickler(pickle._Pickler):
    """Pickles as Python 2 did: text and bytes alike as byte strings, numpy 1's module names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_string
    dispatch[bytes] = save_string

    def save_global(self, obj: object, name: str | None = None) -> None:
        module, qualname = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
        if module.startswith("numpy._core"):  # numpy 2's private path; numpy 1 (and the originals) say numpy.core
            self.write(pickle.GLOBAL + f"numpy.core{module[len('numpy._core') :]}\n{qualname}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _b(names: list[str]) -> list[bytes]:
    return [n.encode() for n in names]


def _download_order(files: list[str]) -> list[str]:
    """The files in an order that is not sorted, as the download's (``data_batch_4``, ``readme.html``, …)."""
    order = [files[k] for k in np.random.default_rng(3).permutation(len(files)).tolist()]
    return order if order != sorted(order) or len(order) < 2 else order[::-1]


def _write_archive(path: Path, folder: Path, members: list[str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name, recursive=False)
        for name in members:
            tar.add(folder / name, arcname=f"{folder.name}/{name}")
