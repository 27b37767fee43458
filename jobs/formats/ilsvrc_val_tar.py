"""``ilsvrc-val-tar``: ``ILSVRC2012_img_val.tar``, a flat tar of val images, read in place
(``jobs.shard.tarsource``); each member's number names its ground-truth line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterdeck.jobs.formats import vallabels
from clusterdeck.jobs.formats.base import Fields, InputFormat
from clusterdeck.jobs.formats.ilsvrc_train_tar import holds_class_tars
from clusterdeck.jobs.shard.sources import Entries
from clusterdeck.jobs.shard.tarsource import list_val_tar, plain_tar


class IlsvrcValTar(InputFormat):
    name = "ilsvrc-val-tar"
    looks_like = "a .tar of images"
    path_kind = "file"
    suffix = ".tar"
    fields = vallabels.FIELDS
    family = vallabels.FAMILY

    def detect(self, path: Path) -> bool:
        return plain_tar(path) and not holds_class_tars(path)

    def check(self, path: Path, fields: Fields) -> None:
        super().check(path, fields)
        vallabels.check_fields(self.name, fields)

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        return list_val_tar(path, vallabels.read_val_labels(fields))

    def inspect(self, path: Path, fields: Fields, verify: bool) -> dict[str, Any]:
        return vallabels.val_report(path, self.name, fields, list_val_tar)


FORMAT = IlsvrcValTar()
