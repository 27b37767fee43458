"""What an export will write, worked out before anything is written; ``clusterdeck export --inspect`` shows it
(``describe``: the ``export-plan`` document; ``app.render.plan`` writes it as text).

With ``size_gb``, the sample count comes from the bytes a sample takes (its pixel row plus its
label row), measured by encoding ``MEASURED`` seeded samples of the input: CSV rows vary in
length with the image. The four files together then come to about ``size_gb`` × 10⁹ bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterdeck.jobs.diskspace import require_free
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.export.encode import CsvEncoder, NpyEncoder, flatten, npy_header
from clusterdeck.jobs.export.inputs import Pool, chunk_rows, split_sizes
from clusterdeck.jobs.formats import registry as input_formats
from clusterdeck.jobs.formats.base import Key
from clusterdeck.jobs.steps.export_spec import ExportSpec

MEASURED = 128
"""Samples encoded to measure the bytes of a row (fewer of large images: a chunk's worth, at least 8)."""
MANIFEST = "export.json"
PARTS = ("train", "train_labels", "val", "val_labels")


@dataclass(frozen=True)
class OutFile:
    name: str  # file name in out
    part: str  # train, train_labels, val, val_labels
    rows: int
    cols: int
    bytes: int  # estimated for CSV pixels, exact otherwise


@dataclass(frozen=True)
class ExportPlan:
    spec: ExportSpec
    input: Path
    pool: Pool
    train: int
    val: int
    tag: str
    row_bytes: float  # measured mean of one sample's pixel row
    label_bytes: int
    measured: int
    files: list[OutFile]

    @property
    def samples(self) -> int:
        return self.train + self.val

    @property
    def columns(self) -> int:
        return 3 * self.spec.image_size**2

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def manifest(self) -> str:
        return manifest_name(self.spec)


def size_tag(spec: ExportSpec) -> str:
    """``6GB`` for a size target, ``50000samples`` for a sample count: the ``<size>`` of every file name."""
    return f"{spec.size_gb:g}GB" if spec.size_gb is not None else f"{spec.samples}samples"


def data_name(spec: ExportSpec, part: str) -> str:
    return f"{spec.name}_{part}_{size_tag(spec)}.{spec.format}"


def manifest_name(spec: ExportSpec) -> str:
    return f"{spec.name}_{size_tag(spec)}.{MANIFEST}"


def output_names(spec: ExportSpec, *, val: bool | None = None) -> list[str]:
    """Every file an export of ``spec`` writes: the data, their .mtd (CSV), the manifest; val files when
    ``val_fraction`` > 0 (or ``val`` says)."""
    parts = PARTS if (spec.val_fraction > 0 if val is None else val) else PARTS[:2]
    names = [data_name(spec, part) for part in parts]
    if spec.format == "csv":
        names += [f"{name}.mtd" for name in names]
    return [*names, manifest_name(spec)]


def spec_key(name: str) -> str:
    return f"export.{name}"


def open_pool(root: Path, split: str, num_classes: int | None, key: Key) -> Pool:
    """The input at ``root``, opened by the first format ``export`` reads that detects it.

    ``key`` names a setting in errors: ``export.split`` in a spec, ``--split`` on the command line."""
    if not root.exists():
        raise UserError(f"{key('input')}: {root}: no such file or directory")
    exportable = [f for f in input_formats.formats() if f.exportable]
    fmt = input_formats.find(root, lambda f: f in exportable)
    if fmt is None:
        readable = " or ".join(f.looks_like for f in exportable)
        raise UserError(f"{key('input')}: {root} is none of what export reads: {readable}")
    return fmt.export_pool(root, split, num_classes, key)


def plan_export(spec: ExportSpec, input_path: Path, key: Key = spec_key) -> ExportPlan:
    """The export ``spec`` asks for, from ``input_path``; ``key`` names settings in errors."""
    pool = open_pool(input_path, spec.split, spec.num_classes, key)
    if pool.size == 0:
        raise UserError(f"{key('input')}: {input_path} holds no samples in split {spec.split!r}")
    measured = max(8, min(MEASURED, chunk_rows(spec.image_size)))
    sample = flatten(pool.sample_rows(measured, spec.seed, spec.image_size, spec.fit), spec.layout)
    if spec.format == "csv":
        encoder = CsvEncoder(spec.decimals, pool.classes)
        row_bytes = sum(len(line) for line in encoder.features(sample)) / len(sample)
        label_bytes = 2 * pool.classes
    else:
        row_bytes = float(sample.shape[1] * NpyEncoder.FEATURE_DTYPE.itemsize)
        label_bytes = pool.classes * NpyEncoder.LABEL_DTYPE.itemsize
    if spec.samples is not None:
        samples = spec.samples
        if samples > pool.size:
            raise UserError(
                f"{key('samples')}: {samples} asked for, but {input_path} holds {pool.size} ({spec.split} split)"
            )
    else:
        assert spec.size_gb is not None
        samples = math.floor(spec.size_gb * 1e9 / (row_bytes + label_bytes))
        if samples > pool.size:
            per_sample = row_bytes + label_bytes
            most = pool.size * per_sample / 1e9
            raise UserError(
                f"{key('size_gb')}: {spec.size_gb:g} GB takes about {samples} samples of {per_sample:,.0f} bytes, "
                f"but {input_path} holds {pool.size} ({spec.split} split, about {most:.3g} GB)"
            )
        if samples == 0:
            raise UserError(
                f"{key('size_gb')}: {spec.size_gb:g} GB is less than one sample ({row_bytes + label_bytes:,.0f} bytes)"
            )
    train, val = split_sizes(samples, spec.val_fraction)
    if train == 0 or (spec.val_fraction > 0 and val == 0):
        raise UserError(
            f"{key('val_fraction')}: {spec.val_fraction:g} of {samples} samples leaves {train} train and {val} val; "
            "export more samples or change val_fraction"
        )
    tag = size_tag(spec)
    return ExportPlan(
        spec, input_path, pool, train, val, tag, row_bytes, label_bytes, len(sample),
        _files(spec, train, val, 3 * spec.image_size**2, pool.classes, row_bytes, label_bytes),
    )  # fmt: skip


def _files(
    spec: ExportSpec, train: int, val: int, cols: int, classes: int, row_bytes: float, label_bytes: int
) -> list[OutFile]:
    files = []
    for split, rows in (("train", train), ("val", val)):
        if rows == 0:
            continue
        for part, width, per_row in ((split, cols, row_bytes), (f"{split}_labels", classes, label_bytes)):
            size = round(rows * per_row)
            if spec.format == "npy":
                dtype = NpyEncoder.FEATURE_DTYPE if part == split else NpyEncoder.LABEL_DTYPE
                size += len(npy_header(rows, width, dtype))
            files.append(OutFile(data_name(spec, part), part, rows, width, size))
    return files


def check_names(spec: ExportSpec, key: Key = spec_key) -> None:
    """``out`` is a directory (or will be) and, unless ``overwrite``, holds no file of the export's names."""
    out = spec.out
    if out.exists() and not out.is_dir():
        raise UserError(f"{key('out')}: {out} is a file, not a directory")
    if not spec.overwrite:
        taken = [name for name in output_names(spec) if (out / name).exists()]
        if taken:
            raise UserError(
                f"{key('out')}: {out / taken[0]} already exists ({len(taken)} of the files do); "
                f"set {key('overwrite')}, or pick another {key('out')} or {key('name')}"
            )


def check_outputs(plan: ExportPlan, key: Key = spec_key) -> None:
    """``check_names``, and the disk has room for the files (and the pool's temporary files: inflated data)."""
    check_names(plan.spec, key)
    inflated = f" and {plan.pool.inflate_bytes} bytes of inflated input data" if plan.pool.inflate_bytes else ""
    require_free(
        key("out"),
        plan.spec.out,
        plan.total_bytes + plan.pool.inflate_bytes,
        f"the export ({len(plan.files)} files of about {plan.total_bytes} bytes{inflated})",
        f"free some space, export fewer samples, or pick another {key('out')}",
    )


def samples_line(plan: ExportPlan) -> str:
    """How many samples, split how, from which seed: the line a plan is read for, in the CLI's plan and the job log."""
    return f"samples  {plan.samples:,}: {plan.train:,} train + {plan.val:,} val (seed {plan.spec.seed})"


def describe(plan: ExportPlan) -> dict[str, Any]:
    """The inspect view: what would be written, as JSON."""
    spec = plan.spec
    return {
        "input": str(plan.input),
        "input_kind": plan.pool.kind,
        "split": spec.split,
        "pool": plan.pool.size,
        "classes": plan.pool.classes,
        "image_size": spec.image_size,
        "columns": plan.columns,
        "layout": spec.layout,
        "fit": spec.fit,
        "format": spec.format,
        "size_gb": spec.size_gb,
        "samples": plan.samples,
        "train": plan.train,
        "val": plan.val,
        "seed": spec.seed,
        "bytes_per_row": round(plan.row_bytes, 1),
        "bytes_per_label_row": plan.label_bytes,
        "measured_on": plan.measured,
        "out": str(spec.out),
        "files": [{"name": f.name, "rows": f.rows, "cols": f.cols, "bytes": f.bytes} for f in plan.files],
        "total_bytes": plan.total_bytes,
        "temporary_bytes": plan.pool.inflate_bytes,
    }
