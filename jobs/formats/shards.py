"""``shards``: a shard set the shard step wrote (``index.json`` and its tars). Not a shard input; ``inspect``
reports it from its index, every shard checked against it (size, then its checksum unless ``verify`` is False,
which skips reading every byte), with image sizes from a few of its shards; ``export`` reads its samples.

The checksums are read by a pool of threads (``THREADS``), several shards at once: one sequential stream
per shard leaves a disk or a parallel filesystem idle between requests, and xxh3-128 hashes far faster than
one stream reads (``bench/verify.py`` measures it against ``cat``)."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clusterdeck.jobs.checksum import CRYPTO, FAST, expected, file_digest
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats.base import ByteProgress, Fields, InputFormat, Key
from clusterdeck.jobs.shard.index import INDEX, read_index

SHARDS_SPREAD = 8  # a shard set's sample is spread over this many shards of a split ...
SHARDS_READ = 16  # ... or more where they are small, up to this many


def threads() -> int:
    """Shards read at once: two per CPU this process may use, at least 4 (reads wait on the disk, not the CPU)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(4, 2 * cpus)


class ShardSetFormat(InputFormat):
    name = "shards"
    looks_like = "a shard set (index.json)"
    path_kind = "dir"
    shardable = False
    exportable = True

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / INDEX).is_file()

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        """``verify``: False checks sizes only; True each shard's fast checksum where the index has it (else
        sha256); ``"sha256"`` the cryptographic one whatever the index has. ``progress`` hears of the bytes read."""
        index = read_index(path)
        try:
            return _shard_report(path, index, verify, progress)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UserError(f"{path / INDEX}: a malformed index ({type(exc).__name__}: {exc})") from None

    def export_pool(self, root: Path, split: str, num_classes: int | None, key: Key) -> Any:
        from clusterdeck.jobs.export.inputs import shard_pool

        return shard_pool(root, split, num_classes, key)


def _shard_report(
    root: Path, index: dict[str, Any], verify: bool | str, progress: ByteProgress | None
) -> dict[str, Any]:
    from clusterdeck.jobs.formats.report import SHOWN_CLASSES, skipped_summary

    encoding = index.get("encoding") or {}
    splits: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    total = 0
    found = _check_all(root, index, verify, progress)
    for split, entry in sorted(index["splits"].items()):
        shards = entry["shards"]
        total += len(shards)
        bad = {s["file"]: p for s in shards if (p := found[s["file"]])}
        problems += [{"split": split, "file": file, "problem": p} for file, p in bad.items()]
        intact = [s for s in shards if s["file"] not in bad]
        splits[split] = {
            "samples": int(entry["samples"]),
            "shards": len(shards),
            "bytes": int(entry["bytes"]),
            "skipped": skipped_summary(list(entry.get("skipped", []))),
            "excluded": int(entry.get("excluded", 0)),
            "image_sizes": _shard_sizes(root, intact),
        }
    classes = list(index["classes"])
    every_fast = all(s.get(FAST) for e in index["splits"].values() for s in e["shards"])
    checksum = None if not verify else FAST if verify is True and every_fast else CRYPTO
    return {
        "path": str(root),
        "format": FORMAT.name,
        "index_format": index["format"],
        "ok": not problems,
        "classes": {"count": len(classes), "first": classes[:SHOWN_CLASSES]},
        "encoding": {k: encoding.get(k) for k in ("resize_shorter", "jpeg_quality")},
        "splits": splits,
        "verify": {
            "sha256": checksum == CRYPTO,
            "checksum": checksum,
            "shards": total,
            "ok": total - len(problems),
            "problems": problems,
        },
    }


def _check_all(
    root: Path, index: dict[str, Any], verify: bool | str, progress: ByteProgress | None
) -> dict[str, str | None]:
    """Each shard's file: why it does not match the index, or None; read by ``threads()`` at once, larger first."""
    shards = sorted(
        (s for e in index["splits"].values() for s in e["shards"]), key=lambda s: int(s["bytes"]), reverse=True
    )
    total = sum(int(s["bytes"]) for s in shards) if verify else 0

    def read(n: int) -> None:
        if progress is not None:
            progress(n, total)

    if not verify or len(shards) < 2:
        return {s["file"]: _check(root, s, verify, read) for s in shards}
    with ThreadPoolExecutor(min(threads(), len(shards)), thread_name_prefix="inspect") as pool:
        found = pool.map(lambda s: _check(root, s, verify, read), shards)
        return dict(zip((s["file"] for s in shards), found, strict=True))


def _check(root: Path, shard: dict[str, Any], verify: bool | str, read: Callable[[int], None]) -> str | None:
    """Why this shard does not match the index, or None; ``read`` hears of its indexed bytes, all of them in the
    end whether they could be read or not (a progress bar that stops short would look stuck)."""
    path = root / shard["file"]
    counted = 0

    def count(n: int) -> None:
        nonlocal counted
        counted += n
        read(n)

    try:
        size = path.stat().st_size
        if size != shard["bytes"]:
            return f"{size} bytes, the index says {shard['bytes']}"
        if verify:
            algorithm, want = expected(shard, fast=verify != CRYPTO)
            if file_digest(path, algorithm, progress=count) != want:
                return f"{algorithm} differs from the index"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    finally:
        if verify and counted < int(shard["bytes"]):
            read(int(shard["bytes"]) - counted)
    return None


def _shard_sizes(root: Path, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Sizes of a sample of images spread over a few seeded shards: the first images of each, read from their
    tar members' headers. A shard's samples are in shuffled order, so its first images are as random a
    sample as any, and reading them costs a few MB where listing every member of a 1 GB tar would not."""
    import random

    from PIL import Image

    from clusterdeck.jobs.formats.report import IMAGE_ERRORS, SEED, SIZE_SAMPLE, size_stats
    from clusterdeck.jobs.shard.encode import IMAGE_FIELDS

    per_shard = -(-SIZE_SAMPLE // max(min(len(shards), SHARDS_SPREAD), 1))
    sizes: list[tuple[int, int]] = []
    unreadable = 0
    for i in random.Random(SEED).sample(range(len(shards)), min(len(shards), SHARDS_READ)):
        wanted = min(per_shard, SIZE_SAMPLE - len(sizes) - unreadable)
        if wanted <= 0:
            break
        try:
            with tarfile.open(root / shards[i]["file"], "r:") as tar:
                for member in tar:
                    if not (member.isfile() and member.name.rsplit(".", 1)[-1] in IMAGE_FIELDS):
                        continue
                    if wanted == 0:
                        break
                    wanted -= 1
                    data = tar.extractfile(member)
                    assert data is not None
                    try:
                        with Image.open(data) as image:
                            sizes.append(image.size)
                    except IMAGE_ERRORS:
                        unreadable += 1
        except (OSError, tarfile.TarError):
            continue  # a damaged shard: the checks name it
    return size_stats(sizes, unreadable)


FORMAT = ShardSetFormat()
