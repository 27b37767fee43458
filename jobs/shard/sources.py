"""Listing inputs without reading them: ImageFolder trees and flat ILSVRC2012 validation sets.

A listing is the canonical, sorted order of a split's samples; the shuffle is applied
on top of it, so the same input and seed always give the same shards.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from jobs.errors import UserError

VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)


@dataclass
class Listing:
    root: Path
    paths: list[str]  # relative to root, canonical order
    labels: list[int]  # class index (sorted-wnid order) of each path
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def imagefolder_classes(root: Path) -> list[str]:
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class folders (expected <wnid>/<file>.JPEG)")
    return classes


def list_imagefolder(root: Path, classes: list[str]) -> Listing:
    listing = Listing(root, [], [])
    for index, wnid in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / wnid):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                listing.paths.append(f"{rel}/{name}")
                listing.labels.append(index)
    return listing


def read_synsets(path: Path) -> list[str]:
    """wnids in ILSVRC2012_ID order, from a devkit meta.mat or a text file (first word of each line)."""
    if path.suffix == ".mat":
        return _synsets_from_meta_mat(path)
    wnids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not wnids:
        raise UserError(f"{path}: no synsets found")
    return wnids


def _synsets_from_meta_mat(path: Path) -> list[str]:
    """The devkit's leaf synsets (num_children = 0) in ILSVRC2012_ID order, as torchvision reads them."""
    from scipy.io import loadmat

    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
    except (KeyError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a devkit meta.mat with a 'synsets' array ({exc})") from None
    leaves = sorted((int(s["ILSVRC2012_ID"]), str(s["WNID"])) for s in synsets if int(s["num_children"]) == 0)
    return [wnid for _, wnid in leaves]


def list_ilsvrc_val(root: Path, ground_truth: Path, synsets: Path, classes: list[str]) -> Listing:
    """Flat ``ILSVRC2012_val_%08d.JPEG`` files; the number in the name is the ground-truth line."""
    id_to_wnid = read_synsets(synsets)
    class_index = {wnid: i for i, wnid in enumerate(classes)}
    truth = read_ground_truth(ground_truth, len(id_to_wnid))
    listing = Listing(root, [], [])
    with os.scandir(root) as entries:
        names = sorted(e.name for e in entries if e.is_file())
    for name in names:
        match = VAL_NAME.match(name)
        if not match:
            listing.skipped.append({"path": name, "reason": "not an ILSVRC2012_val_XXXXXXXX.JPEG name"})
            continue
        number = int(match.group(1))
        if not 1 <= number <= len(truth):
            listing.skipped.append({"path": name, "reason": f"no line {number} in {ground_truth.name}"})
            continue
        wnid = id_to_wnid[truth[number - 1] - 1]
        if wnid not in class_index:
            listing.skipped.append({"path": name, "reason": f"class {wnid} is not among the train classes"})
            continue
        listing.paths.append(name)
        listing.labels.append(class_index[wnid])
    return listing


def read_ground_truth(path: Path, synset_count: int) -> list[int]:
    ids = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = int(line)
        except ValueError:
            raise UserError(f"{path}:{lineno}: expected an ILSVRC2012_ID, got {line.strip()!r}") from None
        if not 1 <= value <= synset_count:
            raise UserError(f"{path}:{lineno}: ILSVRC2012_ID {value} is outside 1..{synset_count}")
        ids.append(value)
    return ids
