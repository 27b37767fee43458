"""The export itself: chosen samples streamed into temporary files, renamed into place once all are complete.

Memory holds one chunk (``inputs.chunk_rows``) at a time, plus a few per decoding worker,
whatever the export's size; CSV is written a row at a time. Each file is written as
``.<name>.part-<host>-<pid>`` next to where it goes. Only when every file is complete and has
the rows it should are the ``.mtd`` files and the manifest written (under temporary names too),
and then everything is renamed: data first. A failure or an interrupt removes the temporary
files, so files of the same names from an earlier export are never half replaced; temporary
files that a killed export on this host left behind are removed by the next one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from clusterdeck.jobs import atomic
from clusterdeck.jobs.diskspace import free_text, is_full
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.export import ExportFailed
from clusterdeck.jobs.export.encode import CsvEncoder, NpyEncoder, flatten, mtd, npy_header
from clusterdeck.jobs.export.inputs import Choice, choose
from clusterdeck.jobs.export.plan import ExportPlan, OutFile, output_names

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


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.part-{socket.gethostname()}-{os.getpid()}")


def write_export(plan: ExportPlan, workers: int, on_progress: Progress | None = None) -> ExportResult:
    spec = plan.spec
    out = spec.out
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out, spec.name)
    cache = _temp(out / f"{spec.name}_{plan.tag}.inflated")
    outputs: dict[str, _Output] = {}
    started = time.monotonic()
    try:
        for f in plan.files:
            temp = _temp(out / f.name)
            with _writing(temp):
                handle = open(temp, "wb", buffering=_BUFFER)  # noqa: SIM115 (closed below, or in finally)
            outputs[f.part] = _Output(f, out / f.name, temp, handle)
            if spec.format == "npy":
                dtype = NpyEncoder.FEATURE_DTYPE if f.part in ("train", "val") else NpyEncoder.LABEL_DTYPE
                _add(outputs[f.part], [npy_header(f.rows, f.cols, dtype)], 0, 0)
        plan.pool.open(cache)
        choice = choose(plan.pool.size, plan.samples, spec.val_fraction, spec.seed)
        _stream(plan, choice, outputs, workers, on_progress, started)
        for o in outputs.values():
            with _writing(o.temp):
                o.handle.flush()
                os.fsync(o.handle.fileno())
                o.handle.close()
            if o.rows != o.file.rows:
                raise RuntimeError(f"{o.file.name}: wrote {o.rows} rows, expected {o.file.rows}")
        return _publish(plan, outputs, time.monotonic() - started)
    finally:
        for o in outputs.values():
            with contextlib.suppress(OSError):  # the disk error that brought us here, again: the file goes anyway
                o.handle.close()
            o.temp.unlink(missing_ok=True)
        shutil.rmtree(cache, ignore_errors=True)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A full disk, a quota or a file size limit fails the export naming the file."""
    try:
        yield
    except OSError as exc:
        space = f" ({free_text(path.parent)})" if is_full(exc) else ""
        raise ExportFailed(f"{path}: {exc.strerror or exc} while writing{space}; nothing was replaced") from None


def remove_stale(out: Path, name: str) -> None:
    """Temporary files (and inflated npz data) of exports named ``name`` that were killed on this host: their pid
    is gone. Another host's cannot be told from a live export's, so they stay."""
    host = socket.gethostname()
    for path in out.glob(f".{glob.escape(name)}_*.part-{glob.escape(host)}-*"):
        stem, _, pid = path.name.rpartition("-")
        if stem.endswith(f".part-{host}") and pid.isdigit() and not _alive(int(pid)):  # not host "node-2"'s
            with contextlib.suppress(OSError):  # someone else's, in a shared directory: theirs to remove
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            _add(outputs[f"{split}_labels"], [encoder.labels(labels)], len(labels), len(labels))
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


def _add(o: _Output, pieces: Iterable[bytes], rows: int, nnz: int) -> None:
    with _writing(o.temp):
        for piece in pieces:
            o.bytes += o.handle.write(piece)
    o.rows += rows
    o.nnz += nnz


def _publish(plan: ExportPlan, outputs: dict[str, _Output], seconds: float) -> ExportResult:
    spec = plan.spec
    if not spec.overwrite:  # checked when planned; a file that appeared since is not replaced either
        taken = [name for name in output_names(spec) if (spec.out / name).exists()]
        if taken:
            raise UserError(f"{spec.out / taken[0]} appeared while exporting; nothing was replaced")
    result = ExportResult(seconds=seconds)
    for o in outputs.values():
        result.files[o.file.name] = {"rows": o.rows, "cols": o.file.cols, "bytes": o.bytes, "nnz": o.nnz}
    metadata = {spec.out / plan.manifest: manifest(plan, result)}
    if spec.format == "csv":
        for o in outputs.values():
            metadata[o.final.with_name(o.final.name + ".mtd")] = mtd(o.rows, o.file.cols, o.nnz)
    temps = {path: _temp(path) for path in metadata}
    try:
        for path, obj in metadata.items():  # umask permissions, as the data files: readable by the group
            with _writing(temps[path]):
                temps[path].write_text(json.dumps(obj, indent=4) + "\n")
        with _signals_held():  # the renames go through together, or not at all
            for final, temp in [*((o.final, o.temp) for o in outputs.values()), *temps.items()]:
                with _writing(final):
                    os.replace(temp, final)
            if spec.overwrite and plan.val == 0:  # an earlier export's val files, beside a manifest without them
                for name in set(output_names(spec, val=True)) - set(output_names(spec, val=False)):
                    (spec.out / name).unlink(missing_ok=True)
            with _writing(spec.out):
                atomic.fsync_dir(spec.out)  # the renames survive a crash of the node, as jobs.atomic's do
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    return result


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait until the block is done (then interrupt as usual)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
