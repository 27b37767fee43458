"""``ilsvrc-train-tar``: ``ILSVRC2012_img_train.tar``, a tar of per-class ``<wnid>.tar``, read in place
(``jobs.shard.tarsource``)."""

from __future__ import annotations

from pathlib import Path

from clusterdeck.jobs.formats.base import Fields, InputFormat
from clusterdeck.jobs.shard.sources import Entries
from clusterdeck.jobs.shard.tarsource import first_file, list_train_tar, plain_tar


class IlsvrcTrainTar(InputFormat):
    name = "ilsvrc-train-tar"
    looks_like = "a .tar of <wnid>.tar members"
    path_kind = "file"
    suffix = ".tar"

    def detect(self, path: Path) -> bool:
        return plain_tar(path) and holds_class_tars(path)

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        return list_train_tar(path)


def holds_class_tars(path: Path) -> bool:
    """A tar whose first file is a ``<wnid>.tar``: the train tar, not a flat tar of images."""
    return first_file(path).name.endswith(".tar")


FORMAT = IlsvrcTrainTar()
