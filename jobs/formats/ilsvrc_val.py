"""``ilsvrc-val``: a flat directory of ``ILSVRC2012_val_%08d.JPEG``; the number in a name is its ground-truth line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clusterdeck.jobs.formats import vallabels
from clusterdeck.jobs.formats.base import ByteProgress, Fields, InputFormat, visible
from clusterdeck.jobs.shard.sources import VAL_NAME, Entries, FileSource, ValLabels, val_entries


class IlsvrcVal(InputFormat):
    name = "ilsvrc-val"
    looks_like = "ILSVRC2012_val_*.JPEG files"
    path_kind = "dir"
    fields = vallabels.FIELDS
    family = vallabels.FAMILY

    def detect(self, path: Path) -> bool:
        return path.is_dir() and any(VAL_NAME.match(name) for name in visible(path)[0])

    def check(self, path: Path, fields: Fields) -> None:
        super().check(path, fields)
        vallabels.check_fields(self.name, fields)

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        return list_ilsvrc_val(path, vallabels.read_val_labels(fields))

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        return vallabels.val_report(path, self.name, fields, list_ilsvrc_val)


def list_ilsvrc_val(root: Path, labels: ValLabels) -> Entries:
    with os.scandir(root) as found:
        return val_entries(FileSource(str(root)), [(e.name, e.name) for e in found if e.is_file()], labels)


FORMAT = IlsvrcVal()
