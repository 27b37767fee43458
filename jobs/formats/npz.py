"""``npz``: downsampled-ImageNet batches (``train_data_batch_*.npz``, ``val_data.npz``), a file or a directory
of them, read where they lie (``jobs.shard.npzsource``); ``export`` reads them too (``jobs.export.inputs``).

``inspect`` checks them with the ``read_batches`` the shard step uses, which reads each ``.npy`` header through
the zip stream and the small ``labels`` member, and stops there: a compressed ``data`` is never inflated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterdeck.jobs.formats.base import ByteProgress, Fields, InputFormat, Key, visible
from clusterdeck.jobs.shard.sources import Entries


class Npz(InputFormat):
    name = "npz"
    looks_like = "npz batches (.npz files)"
    fields = ("synsets",)
    exportable = True
    stored_as_is = False  # rows become PNGs (or JPEGs)

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return path.name.lower().endswith(".npz")
        return path.is_dir() and any(name.endswith(".npz") for name in visible(path)[0])

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        from clusterdeck.jobs.shard.npzsource import list_npz

        assert cache is not None, "npz: a compressed 'data' is inflated into the cache"
        return list_npz(path, fields.get("synsets"), cache)

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        """Batches from their ``.npy`` headers and labels: nothing inflated, whatever the compression."""
        import numpy as np

        from clusterdeck.jobs.formats.report import classes_summary, input_base, skipped_summary
        from clusterdeck.jobs.shard.npzsource import read_batches

        batches = read_batches(path, fields.get("synsets"))
        files, side, rows = batches.files, batches.side, batches.rows
        found, counts = np.unique(np.concatenate(batches.labels), return_counts=True)
        per_class = {batches.names[k - 1]: n for k, n in zip(found.tolist(), counts.tolist(), strict=True)}
        square = {"min": side, "median": side, "max": side}
        return {
            **input_base(path, self.name),
            "images": rows,
            "bytes": rows * 3 * side * side,
            "classes": classes_summary(batches.classes, per_class),
            "classes_note": None,
            "image_sizes": {"measured": rows, "unreadable": 0, "width": square, "height": dict(square)},
            "skipped": skipped_summary([]),
            "npz": {"batches": len(files), "side": side, "file_bytes": sum(f.stat().st_size for f in files)},
        }

    def export_pool(self, root: Path, split: str, num_classes: int | None, key: Key) -> Any:
        from clusterdeck.jobs.export.inputs import npz_pool

        return npz_pool(root, split, num_classes, key)


FORMAT = Npz()
