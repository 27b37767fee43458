"""``shards``: a shard set the shard step wrote (``index.json`` and its tars). Not a shard input; ``inspect``
reports it from its index, every shard checked against it (size, then sha256 unless ``verify`` is False, which
skips reading every byte), with image sizes from a few of its shards; ``export`` reads its samples."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from clusterdeck.jobs.checksum import CRYPTO, FAST, expected, file_digest
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats.base import Fields, InputFormat, Key
from clusterdeck.jobs.shard.index import INDEX, read_index

SHARDS_SPREAD = 8  # a shard set's sample is spread over this many shards of a split ...
SHARDS_READ = 16  # ... or more where they are small, up to this many


class ShardSetFormat(InputFormat):
    name = "shards"
    looks_like = "a shard set (index.json)"
    path_kind = "dir"
    shardable = False
    exportable = True

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / INDEX).is_file()

    def inspect(self, path: Path, fields: Fields, verify: bool | str) -> dict[str, Any]:
        """``verify``: False checks sizes only; True each shard's fast checksum where the index has it (else
        sha256); ``"sha256"`` the cryptographic one whatever the index has."""
        index = read_index(path)
        try:
            return _shard_report(path, index, verify)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UserError(f"{path / INDEX}: a malformed index ({type(exc).__name__}: {exc})") from None

    def export_pool(self, root: Path, split: str, num_classes: int | None, key: Key) -> Any:
        from clusterdeck.jobs.export.inputs import shard_pool

        return shard_pool(root, split, num_classes, key)


def _shard_report(root: Path, index: dict[str, Any], verify: bool | str) -> dict[str, Any]:
    from clusterdeck.jobs.formats.report import SHOWN_CLASSES, skipped_summary

    encoding = index.get("encoding") or {}
    splits: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    total = 0
    for split, entry in sorted(index["splits"].items()):
        shards = entry["shards"]
        total += len(shards)
        bad = {s["file"]: p for s in shards if (p := _check(root, s, verify))}
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


def _check(root: Path, shard: dict[str, Any], verify: bool | str) -> str | None:
    """Why this shard does not match the index, or None."""
    path = root / shard["file"]
    try:
        size = path.stat().st_size
        if size != shard["bytes"]:
            return f"{size} bytes, the index says {shard['bytes']}"
        if verify:
            algorithm, want = expected(shard, fast=verify != CRYPTO)
            if file_digest(path, algorithm) != want:
                return f"{algorithm} differs from the index"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


def _shard_sizes(root: Path, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Sizes of a seeded sample of images spread over a few shards, each read from its tar member's header."""
    import numpy as np
    from PIL import Image

    from clusterdeck.jobs.formats.report import IMAGE_ERRORS, SEED, SIZE_SAMPLE, pick, size_stats
    from clusterdeck.jobs.shard.encode import IMAGE_FIELDS

    rng = np.random.default_rng(SEED)
    per_shard = -(-SIZE_SAMPLE // max(min(len(shards), SHARDS_SPREAD), 1))
    sizes: list[tuple[int, int]] = []
    unreadable = 0
    for i in rng.permutation(len(shards))[:SHARDS_READ].tolist():
        wanted = min(per_shard, SIZE_SAMPLE - len(sizes) - unreadable)
        if wanted <= 0:
            break
        try:
            with tarfile.open(root / shards[i]["file"], "r:") as tar:
                images = [m for m in tar if m.isfile() and m.name.rsplit(".", 1)[-1] in IMAGE_FIELDS]
                for j in pick(len(images), wanted, rng):
                    member = tar.extractfile(images[j])
                    assert member is not None
                    try:
                        with Image.open(member) as image:
                            sizes.append(image.size)
                    except IMAGE_ERRORS:
                        unreadable += 1
        except (OSError, tarfile.TarError):
            continue  # a damaged shard: the checks name it
    return size_stats(sizes, unreadable)


FORMAT = ShardSetFormat()
