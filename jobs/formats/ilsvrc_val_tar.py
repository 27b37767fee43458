"""``ilsvrc-val-tar``: ``ILSVRC2012_img_val.tar``, a flat tar of val images, read in place
(``jobs.shard.tarsource``); each member's number names its ground-truth line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clusterdeck.jobs.formats import vallabels
from clusterdeck.jobs.formats.base import ByteProgress, Fields, InputFormat
from clusterdeck.jobs.shard.sources import VAL_NAME, Entries
from clusterdeck.jobs.shard.tarsource import first_file, list_val_tar, plain_tar


class IlsvrcValTar(InputFormat):
    name = "ilsvrc-val-tar"
    looks_like = "a .tar of images"
    path_kind = "file"
    suffix = ".tar"
    fields = vallabels.FIELDS
    family = vallabels.FAMILY

    def detect(self, path: Path) -> bool:
        return plain_tar(path) and holds_val_images(path)

    def check(self, path: Path, fields: Fields) -> None:
        super().check(path, fields)
        vallabels.check_fields(self.name, fields)

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        return list_val_tar(path, vallabels.read_val_labels(fields))

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        return vallabels.val_report(path, self.name, fields, list_val_tar)


def holds_val_images(path: Path) -> bool:
    """A tar whose first file is an image in no folder, or a val image in one: not a tar of class folders."""
    first = first_file(path).name
    name = os.path.basename(first)
    return not name.endswith(".tar") and ("/" not in first.removeprefix("./") or bool(VAL_NAME.match(name)))


FORMAT = IlsvrcValTar()
