"""The export itself: chosen samples streamed into temporary files, renamed into place once all are complete.

Memory holds one chunk of ``CHUNK_ROWS`` samples at a time (per decoding worker, a few),
whatever the export's size. Each file is written as ``.<name>.part-<host>-<pid>`` next to
where it goes; only when every file is complete and has the rows it should are they renamed,
data first, then the ``.mtd`` files and the manifest. A failure or an interrupt removes the
temporary files, so files of the same names from an earlier export are never half replaced.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from jobs.errors import UserError
from jobs.export.encode import CsvEncoder, NpyEncoder, flatten, mtd, npy_header
from jobs.export.inputs import Choice, choose, remove_cache
from jobs.export.plan import ExportPlan, OutFile

Progress = Callable[[dict[str, Any]], None]
PROGRESS_EVERY_S = 2.0
_BUFFER = 8 << 20


@dataclass
class _Output:
    file: OutFile
    final: Path
    temp: Path
    handle: BinaryIO
    rows: int = 0
    nnz: int = 0
    bytes: int = 0


@dataclass
class ExportResult:
    files: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> rows, cols, bytes, nnz
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(f["bytes"] for f in self.files.values())


def write_export(plan: ExportPlan, workers: int, on_progress: Progress | None = None) -> ExportResult:
    spec = plan.spec
    out = spec.out
    out.mkdir(parents=True, exist_ok=True)
    cache = out / f".{spec.name}_{plan.tag}.inflated-{socket.gethostname()}-{os.getpid()}"
    suffix = f".part-{socket.gethostname()}-{os.getpid()}"
    outputs: dict[str, _Output] = {}
    started = time.monotonic()
    try:
        for f in plan.files:
            temp = out / f".{f.name}{suffix}"
            handle = open(temp, "wb", buffering=_BUFFER)  # noqa: SIM115 (closed in finally)
            outputs[f.part] = _Output(f, out / f.name, temp, handle)
            if spec.format == "npy":
                dtype = NpyEncoder.FEATURE_DTYPE if f.part in ("train", "val") else NpyEncoder.LABEL_DTYPE
                outputs[f.part].bytes += handle.write(npy_header(f.rows, f.cols, dtype))
        plan.pool.open(cache)
        choice = choose(plan.pool.size, plan.samples, spec.val_fraction, spec.seed)
        _stream(plan, choice, outputs, workers, on_progress, started)
        for o in outputs.values():
            o.handle.flush()
            os.fsync(o.handle.fileno())
            o.handle.close()
            if o.rows != o.file.rows:
                raise RuntimeError(f"{o.file.name}: wrote {o.rows} rows, expected {o.file.rows}")
        return _publish(plan, outputs, time.monotonic() - started)
    finally:
        for o in outputs.values():
            o.handle.close()
            o.temp.unlink(missing_ok=True)
        remove_cache(cache)


def _stream(
    plan: ExportPlan,
    choice: Choice,
    outputs: dict[str, _Output],
    workers: int,
    on_progress: Progress | None,
    started: float,
) -> None:
    spec = plan.spec
    encoder = CsvEncoder(spec.decimals, plan.pool.classes) if spec.format == "csv" else NpyEncoder(plan.pool.classes)
    done, reported = 0, started
    for chunk in plan.pool.chunks(choice, spec.image_size, spec.fit, workers, spec.seed):
        for split, mask in (("train", ~chunk.val), ("val", chunk.val)):
            if not mask.any():
                continue
            rows = flatten(chunk.pixels[mask], spec.layout)
            labels = chunk.labels[mask]
            _add(outputs[split], encoder.features(rows), len(rows), int(np.count_nonzero(rows)))
            _add(outputs[f"{split}_labels"], encoder.labels(labels), len(labels), len(labels))
        done += len(chunk.labels)
        now = time.monotonic()
        if on_progress is not None and (now - reported >= PROGRESS_EVERY_S or done == plan.samples):
            reported = now
            written = sum(o.bytes for o in outputs.values())
            on_progress(
                {
                    "samples_done": done,
                    "samples_total": plan.samples,
                    "bytes_written": written,
                    "mb_s": written / 1e6 / max(now - started, 1e-9),
                }
            )


def _add(o: _Output, data: bytes, rows: int, nnz: int) -> None:
    o.bytes += o.handle.write(data)
    o.rows += rows
    o.nnz += nnz


def _publish(plan: ExportPlan, outputs: dict[str, _Output], seconds: float) -> ExportResult:
    spec = plan.spec
    if not spec.overwrite:  # checked when planned; a file that appeared since is not replaced either
        taken = [name for name in plan.outputs() if (spec.out / name).exists()]
        if taken:
            raise UserError(f"{spec.out / taken[0]} appeared while exporting; nothing was replaced")
    result = ExportResult(seconds=seconds)
    for o in outputs.values():
        os.replace(o.temp, o.final)
        result.files[o.file.name] = {"rows": o.rows, "cols": o.file.cols, "bytes": o.bytes, "nnz": o.nnz}
    if spec.format == "csv":
        for o in outputs.values():
            _write_json(o.final.with_name(o.final.name + ".mtd"), mtd(o.rows, o.file.cols, o.nnz))
    _write_json(spec.out / plan.manifest, manifest(plan, result))
    return result


def _write_json(path: Path, obj: Any) -> None:
    """Replaced whole, with the permissions the umask gives (readable by the group, like the data files)."""
    temp = path.with_name(f".{path.name}.part-{socket.gethostname()}-{os.getpid()}")
    try:
        temp.write_text(json.dumps(obj, indent=4) + "\n")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def manifest(plan: ExportPlan, result: ExportResult) -> dict[str, Any]:
    """What was exported from what, and the class of each one-hot column (``class_names[k]`` is column k)."""
    spec = plan.spec
    return {
        "input": str(plan.input),
        "input_kind": plan.pool.kind,
        "split": spec.split,
        "seed": spec.seed,
        "image_size": spec.image_size,
        "layout": spec.layout,
        "fit": spec.fit,
        "format": spec.format,
        "decimals": spec.decimals if spec.format == "csv" else None,
        "pixel_scale": "value = pixel / 255",
        "train": plan.train,
        "val": plan.val,
        "classes": plan.pool.classes,
        "class_names": plan.pool.class_names[: plan.pool.classes],
        "files": result.files,
        "seconds": round(result.seconds, 1),
        "created_at": time.time(),
    }
