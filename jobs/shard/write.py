"""Writing one shard: read each sample, store it as the encoder says, skip what is not an image, verify on resume."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clusterdeck.jobs import atomic
from clusterdeck.jobs.checksum import FAST, expected, file_digest
from clusterdeck.jobs.shard.encode import SkipSample
from clusterdeck.jobs.shard.plan import ShardJob
from clusterdeck.jobs.shard.tarwrite import ShardTarWriter
from clusterdeck.jobs.telemetry.pipeline import Pipeline

PARTS_DIR = ".parts"


def part_path(out_dir: Path, name: str) -> Path:
    return out_dir / PARTS_DIR / f"{name}.json"


def write_shard(job: ShardJob, out_dir: Path, classes: list[str], pipeline: Pipeline | None = None) -> dict[str, Any]:
    """Writes ``<name>.tar`` under a temporary name, then renames it and records it; ``pipeline`` counts inputs."""
    final = out_dir / f"{job.name}.tar"
    tmp = out_dir / f".{job.name}.tar.tmp-{os.getpid()}"
    skipped = []
    try:
        with named(final), ShardTarWriter(tmp) as tar:
            for key, name, loc, label in zip(job.keys, job.names, job.locs, job.labels.tolist(), strict=True):
                try:
                    raw = job.source.read(loc)
                except OSError as exc:
                    skipped.append({"path": name, "reason": f"unreadable: {exc.strerror or exc}"})
                    continue
                if pipeline is not None:
                    pipeline.add(raw.nbytes if isinstance(raw, np.ndarray) else len(raw))
                try:
                    ext, data = job.encoder.encode(raw)
                except SkipSample as exc:
                    skipped.append({"path": name, "reason": str(exc)})
                    continue
                meta = json.dumps({"wnid": classes[label], "path": name}, sort_keys=True).encode()
                tar.add_sample(key, {ext: data, "cls": str(label).encode(), "json": meta})
            sha256 = tar.close()
            samples, size, fast = tar.samples, tar.bytes, tar.xxh3
        with named(final):
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    record = {
        "name": job.name,
        "split": job.split,
        "file": final.name,
        "samples": samples,
        "bytes": size,
        "sha256": sha256,
        FAST: fast,
        "members": job.members_digest(),
        "skipped": skipped,
    }
    with named(part_path(out_dir, job.name)):
        atomic.write_json(part_path(out_dir, job.name), record)
    return record


@contextlib.contextmanager
def named(path: Path) -> Iterator[None]:
    """An OSError of a write (a full disk) names the file being written, for the one line the step ends with."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def completed_part(job: ShardJob, out_dir: Path, verify: bool = True) -> dict[str, Any] | None:
    """The record of a shard already written for this very plan and intact on disk, else None."""
    try:
        record = atomic.read_json(part_path(out_dir, job.name))
    except (OSError, ValueError):
        return None
    tar = out_dir / f"{job.name}.tar"
    if record.get("members") != job.members_digest():
        return None
    try:
        if tar.stat().st_size != record["bytes"]:
            return None
    except OSError:
        return None
    if verify:
        algorithm, digest = expected(record)  # the fast checksum, or sha256 for a shard written before it
        if file_digest(tar, algorithm) != digest:
            return None
    return record


def write_or_reuse(
    job: ShardJob, out_dir: Path, classes: list[str], pipeline: Pipeline | None = None
) -> tuple[dict[str, Any], bool]:
    """(record, reused): a complete, verified shard is kept; anything else is written again."""
    record = completed_part(job, out_dir)
    if record is not None:
        return record, True
    return write_shard(job, out_dir, classes, pipeline), False
