"""The sample data as HuggingFace downloads image sets: parquet files with ``datasets``' schema metadata, and a
``save_to_disk`` directory (Arrow IPC stream files), written by pyarrow alone (``datasets`` is not needed).

Layout, as ``ILSVRC/imagenet-1k`` is downloaded::

    DIR/data/train-00000-of-00003.parquet        rows in a shuffled order, several row groups each
    DIR/data/validation-00000-of-00001.parquet   the val images, labelled from the ground truth
    DIR/data/test-00000-of-00001.parquet         the val images again, label -1 (as the real test split)

The class names are the sorted wnids, so a label is ImageFolder's class index and the shards are the tree's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterdeck.jobs.sample_data import SampleData

Row = tuple[bytes, str, int]  # image bytes, image path, label


@dataclass(frozen=True)
class HfData:
    root: Path  # the repository root, holding data/
    classes: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def files(self, split: str) -> list[Path]:
        return sorted(self.data.glob(f"{split}-*.parquet"))


def features(classes: list[str]) -> dict[str, Any]:
    """``datasets``' features of an image classification set: an Image and a ClassLabel."""
    return {"image": {"_type": "Image"}, "label": {"names": list(classes), "_type": "ClassLabel"}}


def hf_table(rows: list[Row], classes: list[str]) -> Any:
    """Rows as the table ``datasets`` writes: ``image`` {bytes, path}, ``label`` int64, the ``huggingface`` metadata."""
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([{"bytes": data, "path": path} for data, path, _ in rows], type=image),
            "label": pa.array([label for _, _, label in rows], type=pa.int64()),
        }
    )
    meta = {"info": {"features": features(classes)}}
    return table.replace_schema_metadata({"huggingface": json.dumps(meta)})


def train_rows(data: SampleData) -> list[Row]:
    classes = sorted(data.wnids)
    return [
        (image.read_bytes(), image.name, k)
        for k, wnid in enumerate(classes)
        for image in sorted((data.train / wnid).iterdir())
    ]


def val_rows(data: SampleData, label: int | None = None) -> list[Row]:
    """The flat val images, labelled from the ground truth (or all ``label``: -1 for a test split)."""
    classes = sorted(data.wnids)
    truth = [int(line) for line in data.ground_truth.read_text().split()]
    images = sorted(data.val.iterdir())
    return [
        (image.read_bytes(), image.name, classes.index(data.wnids[truth[n] - 1]) if label is None else label)
        for n, image in enumerate(images)
    ]


def write_parquet_split(
    folder: Path, split: str, rows: list[Row], classes: list[str], files: int, row_group: int
) -> list[Path]:
    """``rows`` as ``<split>-0000K-of-0000N.parquet`` files, ``row_group`` rows per row group."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, part in enumerate(np.array_split(np.arange(len(rows)), files)):
        path = folder / f"{split}-{k:05d}-of-{files:05d}.parquet"
        pq.write_table(hf_table([rows[i] for i in part], classes), path, row_group_size=row_group)
        paths.append(path)
    return paths


def make_hf_parquet(data: SampleData, root: Path, files: int = 3, row_group: int = 10, seed: int = 0) -> HfData:
    """The sample set as a HF repository: train (shuffled rows), validation and an unlabelled test split."""
    classes = sorted(data.wnids)
    rows = train_rows(data)
    order = np.random.default_rng(seed).permutation(len(rows))
    write_parquet_split(root / "data", "train", [rows[i] for i in order], classes, files, row_group)
    write_parquet_split(root / "data", "validation", val_rows(data), classes, 1, row_group)
    write_parquet_split(root / "data", "test", val_rows(data, label=-1), classes, 1, row_group)
    return HfData(root, classes)


def make_save_to_disk(data: SampleData, path: Path, files: int = 2, batch: int = 16, seed: int = 0) -> Path:
    """The train split as ``Dataset.save_to_disk`` leaves it: Arrow stream files, dataset_info.json, state.json."""
    import pyarrow as pa

    classes = sorted(data.wnids)
    rows = train_rows(data)
    order = np.random.default_rng(seed).permutation(len(rows))
    path.mkdir(parents=True, exist_ok=True)
    names = []
    for k, part in enumerate(np.array_split(order, files)):
        name = f"data-{k:05d}-of-{files:05d}.arrow"
        table = hf_table([rows[i] for i in part], classes)
        with pa.ipc.new_stream(str(path / name), table.schema) as writer:
            for piece in table.to_batches(max_chunksize=batch):
                writer.write_batch(piece)
        names.append(name)
    (path / "dataset_info.json").write_text(json.dumps({"features": features(classes), "splits": {}}))
    state = {"_data_files": [{"filename": n} for n in names], "_split": "train", "_format_type": None}
    (path / "state.json").write_text(json.dumps(state))
    return path
