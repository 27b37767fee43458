"""``imagefolder``: ``<wnid>/<file>`` class folders, as torchvision's ImageFolder reads them."""

from __future__ import annotations

import os
from pathlib import Path

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats.base import Fields, InputFormat, visible
from clusterdeck.jobs.shard.sources import Entries, FileSource

DATASET_SPLITS = {"train", "val", "test"}
"""Folders that make a directory a dataset root holding several inputs, not an input of these classes."""


class ImageFolder(InputFormat):
    name = "imagefolder"
    looks_like = "class folders"
    path_kind = "dir"

    def detect(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        folders = visible(path)[1]
        if folders and set(folders) <= DATASET_SPLITS:
            raise UserError(
                f"{path}: holds {', '.join(folders)}: a dataset root, not one input; inspect {path / folders[0]} "
                f"(or --format {self.name} to read these folders as classes)"
            )
        return bool(folders)

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        return list_imagefolder(path)


def imagefolder_classes(root: Path) -> list[str]:
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class folders (expected <wnid>/<file>.JPEG)")
    return classes


def list_imagefolder(root: Path) -> Entries:
    classes = imagefolder_classes(root)
    entries = Entries(FileSource(str(root)), [], [], [], classes)
    for wnid in classes:
        for dirpath, dirnames, filenames in os.walk(root / wnid):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                path = f"{rel}/{name}"
                entries.add(path, path, wnid)
    return entries


FORMAT = ImageFolder()
