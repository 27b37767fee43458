"""``clusterdeck inspect``: what a shard input or a shard set holds, read in place, nothing written.

An input is listed by the same functions the shard step uses (so inspect sees what sharding
would see), and reported as counts, classes, bytes, skipped entries and image sizes measured
on a seeded sample of at most ``SIZE_SAMPLE`` images (PIL reads only each image's header).
A shard set is reported from its ``index.json``, with image sizes from a few of its shards
and every shard checked against the index: size, then sha256 (``verify=False`` skips the
hashing, which reads every byte).

``npz`` batches are checked by the same ``read_batches`` the shard step uses, which reads
each ``.npy`` header through the zip stream and the small ``labels`` member; inspect stops
there, so a compressed ``data`` is never inflated.

No torch, torchvision or webdataset here: the CLI must start fast on a login node.
"""

from __future__ import annotations

import io
import os
import statistics
import tarfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
from PIL import Image

from jobs.errors import UserError
from jobs.shard.encode import DEFAULT_RESIZE_QUALITY, IMAGE_FIELDS
from jobs.shard.index import INDEX, read_index
from jobs.shard.inputs import list_images, read_val_labels
from jobs.shard.npzsource import read_batches
from jobs.shard.sources import NOT_A_VAL_NAME, VAL_NAME, Entries, FileSource, ValLabels
from jobs.shard.tarsource import TarSource, open_for_headers, tar_members
from jobs.shard.tarwrite import sha256_file
from jobs.spec import VAL_FORMATS, ShardFormat

FORMATS = (*get_args(ShardFormat), "shards")
SIZE_SAMPLE = 64  # images whose size is measured
SHARDS_SPREAD = 8  # a shard set's sample is spread over this many shards of a split ...
SHARDS_READ = 16  # ... or more where they are small, up to this many
SHOWN_CLASSES = 5
SEED = 0
DATASET_SPLITS = {"train", "val", "test"}
NEEDS_LABELS = "unknown: give --devkit F (or --ground-truth F --synsets F) to label them"
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class _Unlabelled(ValLabels):
    """Val labels when no ground truth is given: every well-named image is listed, its class unknown."""

    def wnid_of(self, name: str) -> tuple[str | None, str]:
        if VAL_NAME.match(name):
            return "", ""
        return None, NOT_A_VAL_NAME


def inspect_path(
    path: Path,
    fmt: str | None = None,
    *,
    devkit: Path | None = None,
    ground_truth: Path | None = None,
    synsets: Path | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """The report of ``path``: a shard set (``index.json``) or a shard input, detected unless ``fmt`` names it."""
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    for option, given in (("--devkit", devkit), ("--ground-truth", ground_truth), ("--synsets", synsets)):
        if given is not None and not given.exists():
            raise UserError(f"{option}: {given}: no such file or directory")
    try:
        return _inspect(path, fmt or detect(path), devkit, ground_truth, synsets, verify)
    except OSError as exc:
        where = exc.filename or path
        raise UserError(f"{where}: cannot read ({exc.strerror or exc}); is {path} a {fmt or 'known'} input?") from None


def _inspect(
    path: Path, fmt: str, devkit: Path | None, ground_truth: Path | None, synsets: Path | None, verify: bool
) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    labels_given = devkit is not None or ground_truth is not None
    if labels_given and fmt not in VAL_FORMATS:
        raise UserError(f"--devkit/--ground-truth: only for ilsvrc-val and ilsvrc-val-tar inputs ({path} is {fmt})")
    if synsets is not None and fmt not in (*VAL_FORMATS, "npz"):
        raise UserError(f"--synsets: only for ilsvrc-val, ilsvrc-val-tar and npz inputs ({path} is {fmt})")
    if fmt == "shards":
        return inspect_shards(path, verify)
    if fmt == "npz":
        return inspect_npz(path, synsets)
    return inspect_input(path, fmt, _val_labels(devkit, ground_truth, synsets))


def detect(path: Path) -> str:
    """The input format from what ``path`` holds; UserError if it is none of them."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            raise UserError(f"{path}: a compressed tar cannot be read in place; decompress it to a plain .tar first")
        if name.endswith(".tar"):
            return _tar_kind(path)
        if name.endswith(".npz"):
            return "npz"
        raise UserError(f"{path}: not a shard input (expected a .tar, a .npz or a directory); name one with --format")
    if (path / INDEX).is_file():
        return "shards"
    with os.scandir(path) as found:
        visible = [e for e in found if not e.name.startswith(".")]
    files = [e.name for e in visible if e.is_file()]
    folders = sorted(e.name for e in visible if e.is_dir())
    if any(VAL_NAME.match(name) for name in files):
        return "ilsvrc-val"
    if any(name.endswith(".npz") for name in files):
        return "npz"
    if folders and set(folders) <= DATASET_SPLITS:
        raise UserError(
            f"{path}: holds {', '.join(folders)}: a dataset root, not one input; inspect {path / folders[0]} "
            "(or --format imagefolder to read these folders as classes)"
        )
    if folders:
        return "imagefolder"
    raise UserError(
        f"{path}: no index.json, class folders, ILSVRC2012_val_*.JPEG or .npz files: not a layout inspect knows"
    )


def _tar_kind(path: Path) -> str:
    """A tar of ``<wnid>.tar`` members is the train tar; a flat tar of images is the val tar."""
    with open_for_headers(path) as f:
        first = next((m for m in tar_members(f, str(path)) if m.isfile()), None)
    if first is None:
        raise UserError(f"{path}: a tar without files")
    return "ilsvrc-train-tar" if first.name.endswith(".tar") else "ilsvrc-val-tar"


def _val_labels(devkit: Path | None, ground_truth: Path | None, synsets: Path | None) -> ValLabels | None:
    if devkit is not None and (ground_truth is not None or synsets is not None):
        raise UserError("--devkit: give the devkit, or --ground-truth with --synsets, not both")
    if devkit is not None or (ground_truth is not None and synsets is not None):
        return read_val_labels(devkit, ground_truth, synsets)
    if ground_truth is not None:
        raise UserError("--ground-truth: needs --synsets too (the class of each ILSVRC2012_ID), or give --devkit")
    if synsets is not None:
        raise UserError("--synsets: a val input needs --ground-truth too (the ID of each image), or give --devkit")
    return None


# --- inputs ---------------------------------------------------------------------------------------------------


def inspect_input(path: Path, fmt: str, labels: ValLabels | None) -> dict[str, Any]:
    """An image input listed as the shard step lists it; val inputs without ``labels`` are counted, not classed."""
    entries = list_images(fmt, path, labels if labels is not None else _Unlabelled([], [], ""))
    if not entries.names and not entries.skipped:
        raise UserError(f"{path}: no images found as {fmt}")
    classed = fmt in ("imagefolder", "ilsvrc-train-tar") or labels is not None
    return {
        **_input_base(path, fmt),
        "images": len(entries.names),
        "bytes": _entry_bytes(entries),
        "classes": _classes(entries.classes, Counter(entries.wnids)) if classed else None,
        "classes_note": None if classed else NEEDS_LABELS,
        "image_sizes": _sample_sizes(entries),
        "skipped": _skipped(entries.skipped),
    }


def _input_base(path: Path, fmt: str) -> dict[str, Any]:
    return {"path": str(path), "format": fmt, "ok": True, "npz": None}


def _entry_bytes(entries: Entries) -> int:
    """Tars: the member sizes of the listing; files: a stat of each."""
    if isinstance(entries.source, TarSource):
        return sum(size for _, size in entries.locs)
    assert isinstance(entries.source, FileSource)
    root = entries.source.root
    return sum(os.stat(os.path.join(root, loc)).st_size for loc in entries.locs)


def _classes(classes: Sequence[str], counts: Mapping[str, int]) -> dict[str, Any]:
    """How many classes the input declares, how many have images, and the fewest and most images of one."""
    per_class = [counts.get(c, 0) for c in classes]
    return {
        "count": len(classes),
        "first": list(classes[:SHOWN_CLASSES]),
        "with_images": sum(1 for n in per_class if n),
        "per_class_min": min(per_class, default=0),
        "per_class_max": max(per_class, default=0),
    }


def _skipped(skipped: list[dict[str, str]]) -> dict[str, Any]:
    return {"count": len(skipped), "first": skipped[0] if skipped else None}


def _pick(count: int, most: int, rng: np.random.Generator) -> list[int]:
    return sorted(rng.choice(count, size=min(most, count), replace=False).tolist()) if count else []


def _sample_sizes(entries: Entries) -> dict[str, Any]:
    sizes, unreadable = [], 0
    for i in _pick(len(entries.locs), SIZE_SAMPLE, np.random.default_rng(SEED)):
        try:
            with Image.open(io.BytesIO(entries.source.read(entries.locs[i]))) as image:
                sizes.append(image.size)
        except _IMAGE_ERRORS:
            unreadable += 1
    return _size_stats(sizes, unreadable)


def _size_stats(sizes: list[tuple[int, int]], unreadable: int) -> dict[str, Any]:
    def stats(values: list[int]) -> dict[str, int] | None:
        if not values:
            return None
        return {"min": min(values), "median": statistics.median_low(values), "max": max(values)}

    return {
        "measured": len(sizes),
        "unreadable": unreadable,
        "width": stats([w for w, _ in sizes]),
        "height": stats([h for _, h in sizes]),
    }


def inspect_npz(path: Path, synsets: Path | None) -> dict[str, Any]:
    """Batches from their ``.npy`` headers and labels: nothing inflated, whatever the compression."""
    batches = read_batches(path, synsets)
    files, side, rows = batches.files, batches.side, batches.rows
    found, counts = np.unique(np.concatenate(batches.labels), return_counts=True)
    per_class = {batches.names[k - 1]: n for k, n in zip(found.tolist(), counts.tolist(), strict=True)}
    classes = batches.classes
    square = {"min": side, "median": side, "max": side}
    return {
        **_input_base(path, "npz"),
        "images": rows,
        "bytes": rows * 3 * side * side,
        "classes": _classes(classes, per_class),
        "classes_note": None,
        "image_sizes": {"measured": rows, "unreadable": 0, "width": square, "height": dict(square)},
        "skipped": _skipped([]),
        "npz": {"batches": len(files), "side": side, "file_bytes": sum(f.stat().st_size for f in files)},
    }


# --- shard sets -----------------------------------------------------------------------------------------------


def inspect_shards(root: Path, verify: bool = True) -> dict[str, Any]:
    """A shard set from its index, every listed shard checked: present, its size, and (``verify``) its sha256."""
    index = read_index(root)
    try:
        return _shard_report(root, index, verify)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UserError(f"{root / INDEX}: a malformed index ({type(exc).__name__}: {exc})") from None


def _shard_report(root: Path, index: dict[str, Any], verify: bool) -> dict[str, Any]:
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
            "skipped": _skipped(list(entry.get("skipped", []))),
            "excluded": int(entry.get("excluded", 0)),
            "image_sizes": _shard_sizes(root, intact),
        }
    classes = list(index["classes"])
    return {
        "path": str(root),
        "format": "shards",
        "index_format": index["format"],
        "ok": not problems,
        "classes": {"count": len(classes), "first": classes[:SHOWN_CLASSES]},
        "encoding": {k: encoding.get(k) for k in ("resize_shorter", "jpeg_quality")},
        "splits": splits,
        "verify": {"sha256": verify, "shards": total, "ok": total - len(problems), "problems": problems},
    }


def _check(root: Path, shard: dict[str, Any], verify: bool) -> str | None:
    """Why this shard does not match the index, or None."""
    path = root / shard["file"]
    try:
        size = path.stat().st_size
        if size != shard["bytes"]:
            return f"{size} bytes, the index says {shard['bytes']}"
        if verify and sha256_file(path) != shard["sha256"]:
            return "sha256 differs from the index"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


def _shard_sizes(root: Path, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Sizes of a seeded sample of images spread over a few shards, each read from its tar member's header."""
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
                for j in _pick(len(images), wanted, rng):
                    member = tar.extractfile(images[j])
                    assert member is not None
                    try:
                        with Image.open(member) as image:
                            sizes.append(image.size)
                    except _IMAGE_ERRORS:
                        unreadable += 1
        except (OSError, tarfile.TarError):
            continue  # a damaged shard: the checks name it
    return _size_stats(sizes, unreadable)


def failures(report: dict[str, Any]) -> list[str]:
    """One line per shard that does not match its index, naming its file."""
    if report["format"] != "shards":
        return []
    root = Path(report["path"])
    return [f"{root / p['file']}: {p['problem']}" for p in report["verify"]["problems"]]


# --- text -----------------------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    """The report as aligned lines for a terminal; the figures are the JSON's."""
    if report["format"] == "shards":
        return "\n".join(_shard_lines(report))
    return "\n".join(_input_lines(report))


def _line(key: str, value: str) -> str:
    return f"{key:<9} {value}".rstrip()


def _mb(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n} ({n / scale:.1f} {unit})"
    return f"{n}"


def _sizes(sizes: dict[str, Any]) -> str:
    if not sizes["measured"]:
        return "-" + (f" ({sizes['unreadable']} unreadable)" if sizes["unreadable"] else "")
    w, h = sizes["width"], sizes["height"]
    text = f"{w['min']}×{h['min']} / {w['median']}×{h['median']} / {w['max']}×{h['max']}"
    return text + (f", {sizes['unreadable']} unreadable" if sizes["unreadable"] else "")


def _skip_text(skipped: dict[str, Any]) -> str:
    first = skipped["first"]
    return f"{skipped['count']}" + (f" (first: {first['path']}: {first['reason']})" if first else "")


def _input_lines(r: dict[str, Any]) -> list[str]:
    lines = [_line("path", r["path"]), _line("format", r["format"]), _line("images", str(r["images"]))]
    c = r["classes"]
    if c is None:
        lines.append(_line("classes", r["classes_note"]))
    else:
        more = ", …" if c["count"] > len(c["first"]) else ""
        lines.append(_line("classes", f"{c['count']}: {', '.join(c['first'])}{more}"))
        lines.append(_line("per class", f"{c['per_class_min']} to {c['per_class_max']} images"))
        if c["with_images"] != c["count"]:
            lines.append(_line("", f"{c['with_images']} of the {c['count']} classes have images"))
    lines.append(_line("bytes", _mb(r["bytes"])))
    if r["npz"]:
        n = r["npz"]
        batches = f"{n['batches']} batch" + ("es" if n["batches"] != 1 else "")
        lines.append(_line("npz", f"{batches} of {n['side']}×{n['side']}, {_mb(n['file_bytes'])} on disk"))
    sizes = r["image_sizes"]
    lines.append(_line("sizes", f"{_sizes(sizes)}  (W×H min / median / max of {sizes['measured']})"))
    lines.append(_line("skipped", _skip_text(r["skipped"])))
    return lines


def _shard_lines(r: dict[str, Any]) -> list[str]:
    c, enc = r["classes"], r["encoding"]
    more = ", …" if c["count"] > len(c["first"]) else ""
    if enc["resize_shorter"] is None and enc["jpeg_quality"] is None:
        encoding = "original bytes"
    else:
        parts = [f"shorter side {enc['resize_shorter']}"] if enc["resize_shorter"] is not None else []
        encoding = ", ".join([*parts, f"JPEG quality {enc['jpeg_quality'] or DEFAULT_RESIZE_QUALITY}"])
    lines = [
        _line("path", r["path"]),
        _line("format", f"shards ({r['index_format']})"),
        _line("classes", f"{c['count']}: {', '.join(c['first'])}{more}"),
        _line("encoding", encoding),
        "",
    ]
    rows = [["split", "samples", "shards", "bytes", "MB", "skipped", "excluded", "sizes W×H min / median / max"]]
    for name, s in r["splits"].items():
        sizes = s["image_sizes"]
        rows.append(
            [
                name,
                str(s["samples"]),
                str(s["shards"]),
                str(s["bytes"]),
                f"{s['bytes'] / 1e6:.1f}",
                str(s["skipped"]["count"]),
                str(s["excluded"]),
                f"{_sizes(sizes)} (of {sizes['measured']})",
            ]
        )
    lines += _table(rows)
    for name, s in r["splits"].items():
        if s["skipped"]["first"]:
            lines.append(f"{name}: first skipped: {s['skipped']['first']['path']}: {s['skipped']['first']['reason']}")
    v = r["verify"]
    checked = "size and sha256" if v["sha256"] else "size only: --no-verify"
    lines.append("")
    if not v["problems"]:
        lines.append(_line("verify", f"{v['ok']} of {v['shards']} shards match the index ({checked})"))
    else:
        lines.append(
            _line("verify", f"{len(v['problems'])} of {v['shards']} shards do not match the index ({checked})")
        )
        width = max(len(p["file"]) for p in v["problems"])
        lines += [f"  {p['file']:<{width}}  {p['problem']}" for p in v["problems"]]
    return lines


def _table(rows: list[list[str]]) -> list[str]:
    """The first and last columns left-aligned, the numbers between right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1
    return [
        "  ".join(
            cell.ljust(w) if i in (0, last) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
