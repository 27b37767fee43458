"""Writing one shard: read each file's original bytes, skip what is not an image, verify on resume."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jobs import atomic
from jobs.shard.plan import ShardJob
from jobs.shard.tarwrite import ShardTarWriter, sha256_file
from jobs.telemetry.pipeline import Pipeline

PARTS_DIR = ".parts"
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def image_kind(head: bytes) -> str | None:
    """The image format from the first bytes, or None: a cheap check that needs no decode."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def part_path(out_dir: Path, name: str) -> Path:
    return out_dir / PARTS_DIR / f"{name}.json"


def write_shard(job: ShardJob, out_dir: Path, classes: list[str], pipeline: Pipeline | None = None) -> dict[str, Any]:
    """Writes ``<name>.tar`` under a temporary name, then renames it and records it; ``pipeline`` counts inputs."""
    root = Path(job.root)
    final = out_dir / f"{job.name}.tar"
    tmp = out_dir / f".{job.name}.tar.tmp-{os.getpid()}"
    skipped = []
    try:
        with ShardTarWriter(tmp) as tar:
            for key, rel, label in zip(job.keys, job.paths, job.labels, strict=True):
                try:
                    with open(root / rel, "rb") as f:
                        data = f.read()
                    if pipeline is not None:
                        pipeline.add(len(data))
                except OSError as exc:
                    skipped.append({"path": rel, "reason": f"unreadable: {exc.strerror or exc}"})
                    continue
                if image_kind(data[:16]) is None:
                    reason = "empty file" if not data else "not an image (unknown file header)"
                    skipped.append({"path": rel, "reason": reason})
                    continue
                meta = json.dumps({"wnid": classes[label], "path": rel}, sort_keys=True).encode()
                tar.add_sample(key, {"jpg": data, "cls": str(label).encode(), "json": meta})
            sha256 = tar.close()
            samples, size = tar.samples, tar.bytes
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
        "members": job.members_digest(),
        "skipped": skipped,
    }
    atomic.write_json(part_path(out_dir, job.name), record)
    return record


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
    if verify and sha256_file(tar) != record["sha256"]:
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
