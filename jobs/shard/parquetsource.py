"""HuggingFace image datasets as downloaded: parquet files, and ``datasets``' ``save_to_disk`` Arrow files.

Both hold an ``image`` column (a struct of the file's ``bytes`` and its ``path``) and an int ``label`` whose
``ClassLabel`` names are in the ``huggingface`` schema metadata (``dataset_info.json`` for ``save_to_disk``).
Listing reads only ``label`` and ``image.path`` (a nested projection: the image bytes are not read; measured, a
100 MB file gives 0.08 MB of reads), so it is cheap on a shared filesystem.

A parquet file is compressed in row groups and cannot give one image without its row group: it is a
``StreamedSource`` (``jobs.shard.spill``), read group by group, only the groups that hold wanted rows. An Arrow IPC
stream is memory-mapped: any row is a pointer into the map, so ``ArrowSource`` reads at random and needs no spill.

Classes are the ``ClassLabel`` names in label order (so a shard's label is the HF label); a name given twice (the
HF ImageNet-1k names say ``crane`` for the bird and the machine) gets its label appended, ``crane [517]``. A sample is
called ``<class>/<path>`` (the path when it has folders), and the canonical order is by (class, path): with wnid
names in sorted order, ImageFolder's order, so the same images give the same shards as their class-folder tree.

pyarrow is imported inside the functions: the CLI imports the format registry and must start fast without it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.sources import Entries

Loc = tuple[int, int, int]
"""(file number, row group or record batch, row in it)."""
NO_LABELS = "the test split has no labels (label -1)"


@dataclass(frozen=True)
class ParquetSource:
    """Parquet files read row group by row group; ``sizes`` is each group's mean image bytes (for sizing only)."""

    files: tuple[str, ...]
    sizes: tuple[tuple[int, ...], ...]

    def __repr__(self) -> str:  # the shard digests hash it: the files name the content, the estimates do not
        return f"ParquetSource(files={self.files!r})"

    def raw_size(self, loc: Loc) -> int:
        return self.sizes[loc[0]][loc[1]]

    def stream(self, wanted: set[Loc]) -> Iterator[tuple[Loc, bytes]]:
        """The wanted rows' image bytes, file by file, reading only the row groups that hold one (a null image
        gives b"", which the writer skips as an empty file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[tuple[int, int], list[int]] = {}
        for file, group, row in wanted:
            groups.setdefault((file, group), []).append(row)
        opened: tuple[int, Any] | None = None
        for file, group in sorted(groups):
            path = self.files[file]
            try:
                if opened is None or opened[0] != file:
                    opened = (file, pq.ParquetFile(path))
                images = opened[1].read_row_group(group, columns=["image.bytes"]).column("image").combine_chunks()
            except (pa.ArrowException, OSError) as exc:
                raise UserError(f"{path}: row group {group}: cannot read ({exc})") from None
            values = images.field("bytes")
            for row in sorted(groups[(file, group)]):
                yield (file, group, row), values[row].as_py() or b""


_batches: dict[str, list[Any]] = {}  # path -> its record batches, memory-mapped once per process (kept over fork)


@dataclass(frozen=True)
class ArrowSource:
    """``save_to_disk`` Arrow files, memory-mapped: a row is read where it lies."""

    files: tuple[str, ...]

    def _images(self, loc: Loc) -> Any:
        path = self.files[loc[0]]
        if path not in _batches:
            _batches[path] = read_stream(Path(path))
        return _batches[path][loc[1]].column("image").field("bytes")[loc[2]]

    def read(self, loc: Loc) -> bytes:
        value = self._images(loc)
        return value.as_py() or b""

    def raw_size(self, loc: Loc) -> int | None:
        value = self._images(loc)
        return value.as_buffer().size if value.is_valid else 0


def read_stream(path: Path) -> list[Any]:
    """The record batches of an Arrow IPC stream file, memory-mapped (nothing copied); UserError naming it."""
    import pyarrow as pa

    try:
        with pa.ipc.open_stream(pa.memory_map(str(path))) as reader:
            batches = list(reader)
            schema = reader.schema
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable Arrow stream file ({exc})") from None
    check_schema(path, schema)
    return batches


def check_schema(path: Path, schema: Any) -> None:
    """An ``image`` struct with the bytes and an integer ``label``: what a HF image classification set has."""
    import pyarrow as pa

    names = schema.names
    image = schema.field("image").type if "image" in names else None
    if not (isinstance(image, pa.StructType) and image.get_field_index("bytes") >= 0):
        raise UserError(f"{path}: no 'image' column with the image bytes (columns: {', '.join(names) or 'none'})")
    if "label" not in names or not pa.types.is_integer(schema.field("label").type):
        raise UserError(f"{path}: no integer 'label' column (columns: {', '.join(names)})")


def open_parquet(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` whose footer and schema are an image set's; UserError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable parquet file ({exc})") from None
    check_schema(path, pf.schema_arrow)
    return pf


def check_parquet_labels(path: Path) -> None:
    """Refuses a test split from the footer: each row group's ``label`` minimum, else the column read alone."""
    pf = open_parquet(path)
    leaf = next(i for i in range(pf.metadata.num_columns) if pf.metadata.schema.column(i).path == "label")
    for group in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(group).column(leaf).statistics
        if stats is not None and stats.has_min_max:
            low = stats.min
        else:
            low = _read_labels(pf.read_row_group(group, columns=["label"]))
        if low is not None and low < 0:
            raise UserError(f"{path}: {NO_LABELS}")


def check_arrow_labels(path: Path) -> None:
    """Refuses a saved test split: the labels of a memory-mapped file are read in place."""
    for batch in read_stream(path):
        low = _read_labels(batch) if batch.num_rows else None
        if low is not None and low < 0:
            raise UserError(f"{path}: {NO_LABELS}")


def _read_labels(table: Any) -> int | None:
    import pyarrow.compute as pc

    return pc.min(table.column("label")).as_py()


def class_names(meta: dict[str, Any] | None) -> list[str] | None:
    """The ``ClassLabel`` names of the ``label`` feature in a ``datasets`` features dict; None without them."""
    label = (meta or {}).get("label")
    if not isinstance(label, dict) or label.get("_type") != "ClassLabel" or not isinstance(label.get("names"), list):
        return None
    names = [str(n) for n in label["names"]]
    twice = Counter(names)
    return [f"{n} [{k}]" if twice[n] > 1 else n for k, n in enumerate(names)]


def features_of_schema(path: Path, schema: Any) -> dict[str, Any] | None:
    """The features in the ``huggingface`` schema metadata, as ``datasets`` writes it into parquet files."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: the 'huggingface' schema metadata is not datasets' JSON with info.features") from None
    return features if isinstance(features, dict) else None


@dataclass
class _Rows:
    """Listed rows of every file, before classes are named."""

    labels: list[int]
    paths: list[str]
    locs: list[Loc]


def _add_rows(rows: _Rows, path: Path, file: int, group: int, labels: list[Any], paths: list[Any]) -> None:
    for row, (label, name) in enumerate(zip(labels, paths, strict=True)):
        if label is None:
            raise UserError(f"{path}: row group {group}, row {row}: no label")
        if label < 0:
            raise UserError(f"{path}: {NO_LABELS}")
        rows.labels.append(label)
        rows.paths.append(name or f"{path.name}#{group}.{row}")
        rows.locs.append((file, group, row))


def _paths_of(images: Any, count: int) -> list[Any]:
    return images.field("path").to_pylist() if images.type.get_field_index("path") >= 0 else [None] * count


def list_parquet(files: list[Path]) -> Entries:
    """Every row of ``files`` (label and path only), as a ``ParquetSource``'s entries in canonical order."""
    import pyarrow as pa

    rows = _Rows([], [], [])
    sizes = []
    features = None
    for number, path in enumerate(files):
        pf = open_parquet(path)
        features = features or features_of_schema(path, pf.schema_arrow)
        image_leaf = next(
            (i for i in range(pf.metadata.num_columns) if pf.metadata.schema.column(i).path == "image.bytes"), None
        )
        columns = ["label", "image.path"] if "path" in pf.schema_arrow.field("image").type.names else ["label"]
        per_group = []
        for group in range(pf.metadata.num_row_groups):
            meta = pf.metadata.row_group(group)
            chunk = meta.column(image_leaf).total_uncompressed_size if image_leaf is not None else 0
            per_group.append(chunk // max(meta.num_rows, 1))
            try:
                table = pf.read_row_group(group, columns=columns)
            except (pa.ArrowException, OSError) as exc:
                raise UserError(f"{path}: row group {group}: cannot read ({exc})") from None
            labels = table.column("label").to_pylist()
            paths = _paths_of(table.column("image").combine_chunks(), len(labels)) if len(columns) > 1 else []
            _add_rows(rows, path, number, group, labels, paths or [None] * len(labels))
        sizes.append(tuple(per_group))
    source = ParquetSource(tuple(str(f) for f in files), tuple(sizes))
    return _entries(source, rows, class_names(features), files)


def list_arrow(files: list[Path], features: dict[str, Any] | None) -> Entries:
    """Every row of ``save_to_disk``'s Arrow files, as an ``ArrowSource``'s entries in canonical order."""
    rows = _Rows([], [], [])
    for number, path in enumerate(files):
        batches = read_stream(path)
        _batches[str(path)] = batches
        for group, batch in enumerate(batches):
            labels = batch.column("label").to_pylist()
            _add_rows(rows, path, number, group, labels, _paths_of(batch.column("image"), len(labels)))
    return _entries(ArrowSource(tuple(str(f) for f in files)), rows, class_names(features), files)


def _entries(source: Any, rows: _Rows, names: list[str] | None, files: list[Path]) -> Entries:
    if not rows.labels:
        raise UserError(f"{files[0]}: no rows" if len(files) == 1 else f"{files[0].parent}: no rows in its files")
    top = max(rows.labels)
    if names is None:  # no ClassLabel: named by number, zero-padded so that sorted names keep label order
        names = [f"{k:0{max(4, len(str(top)))}d}" for k in range(top + 1)]
    elif top >= len(names):
        at = rows.labels.index(top)
        raise UserError(f"{source.files[rows.locs[at][0]]}: label {top} is outside the {len(names)} ClassLabel names")
    keyed = [
        (names[label], path if "/" in path else f"{names[label]}/{path}", n)
        for n, (label, path) in enumerate(zip(rows.labels, rows.paths, strict=True))
    ]
    keyed.sort(key=lambda k: (k[0], rows.paths[k[2]], k[2]))
    entries = Entries(source, [], [], [], names)
    for wnid, name, n in keyed:
        entries.add(name, rows.locs[n], wnid)
    return entries
