"""``imagefolder-tar``: a tar of an ImageFolder tree (``[prefix/]<class>/<file>`` members), plain or compressed
(``.tar.gz``/``.tgz``, ``.tar.zst``/``.tzst``, ``.tar.xz``, ``.tar.bz2``), e.g. ``imagenet21k_resized.tar.gz``
with ``prefix = "imagenet21k_train"``; nothing is extracted.

A plain tar is read in place, each image one ``pread`` at its offset (``jobs.shard.tarsource``). A compressed
one cannot seek: it is listed in one streaming pass (``jobs.shard.tarstream``) and its samples are spilled by a
second (``jobs.shard.spill``), so the shards are still the seeded global permutation, byte for byte those of
the extracted tree (``jobs.shard.foldertar`` names and orders the members as ImageFolder does).

At submit nothing is decompressed: a plain tar's first headers are checked for files outside the class folders,
a compressed one's first bytes for its compression; the job's listing sees the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats.base import ByteProgress, Fields, InputFormat, Key
from clusterdeck.jobs.shard.foldertar import check_members, folder_entries, parts_of, plain_members
from clusterdeck.jobs.shard.sources import Entries
from clusterdeck.jobs.shard.tarsource import TarSource, first_file, plain_tar
from clusterdeck.jobs.shard.tarstream import COMPRESSIONS, compression_of

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""torchvision's ImageFolder's: what the first file of a tar of class folders is named (detection only)."""
CHECK_MEMBERS = 2_000
"""Headers of a plain tar read at submit: a few reads, however large the archive (the job reads them all)."""


class ImageFolderTar(InputFormat):
    name = "imagefolder-tar"
    exportable = True
    looks_like = "a tar of class folders (.tar, .tar.gz, .tar.zst, .tar.xz, .tar.bz2)"
    path_kind = "file"
    suffix = ".tar"
    fields = ("prefix",)

    def detect(self, path: Path) -> bool:
        """A tar whose first file is an image in a folder (a devkit archive's ``COPYING`` is not)."""
        if plain_tar(path):
            return _in_class_folder(first_file(path).name)
        if not path.is_file() or compression_of(path) is None:
            return False
        from clusterdeck.jobs.shard import tarstream

        first = tarstream.first_file(path)  # only the archive's start is decompressed
        if first is None:
            raise UserError(f"{path}: a compressed tar without files")
        if first.endswith(".tar"):
            raise UserError(
                f"{path}: a compressed tar of tars (first: {first}); the ILSVRC2012 tars are read in place once "
                "decompressed to a plain .tar"
            )
        return _in_class_folder(first)

    def check(self, path: Path, fields: Fields) -> None:
        super().check(path, fields)
        if not path.is_file():
            return  # not checked here (a spec read back without its paths)
        suffixes = ", ".join((".tar", *COMPRESSIONS))
        kind = compression_of(path)
        try:
            if kind is not None:
                from clusterdeck.jobs.shard.tarstream import check_magic

                check_magic(path, kind)
            elif plain_tar(path):
                found = plain_members(path, CHECK_MEMBERS)
                check_members(path, (name for name, _ in found.files), fields.get("prefix"), found.complete)
            else:
                raise ValueError(f"format {self.name!r} reads a file named {suffixes}; {path} is not")
        except UserError as exc:
            raise ValueError(str(exc)) from None

    def streamed(self, path: Path, fields: Fields) -> bool:
        """A compressed tar is read front to back; a plain one at random, by member offset."""
        return compression_of(path) is not None

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        prefix = fields.get("prefix")
        if compression_of(path) is None:
            found = plain_members(path)
            return folder_entries(path, TarSource(str(path)), found.files, prefix, found.skipped)
        from clusterdeck.jobs.shard.tarstream import StreamedTarSource, cached_scan

        # one listing per archive, above the split's own cache folder: train and val in one archive (ImageNet-21K-P)
        # are listed once (the listing is keyed by the archive's path, size and mtime)
        scan = cached_scan(path, cache.parent / "tar-listings" if cache is not None else None)
        members = [(name, (n, size)) for n, (name, size) in enumerate(zip(scan.names, scan.sizes, strict=True))]
        return folder_entries(path, StreamedTarSource(str(path)), members, prefix, [])

    def export_pool(self, root: Path, split: str, num_classes: int | None, key: Key) -> Any:
        """The archive's samples; with several top folders (``imagenet21k_train``, ``imagenet21k_val``) ``split``
        picks the one named so or ending in ``_<split>`` (``val`` also takes ``validation``)."""
        from clusterdeck.jobs.export.entries import entries_pool
        from clusterdeck.jobs.shard.tarstream import StreamedTarSource, scan

        members: list[tuple[str, Any]]
        if compression_of(root) is None:
            found = plain_members(root)
            members, source, skipped = found.files, TarSource(str(root)), found.skipped
        else:
            listed = scan(root)
            members = [(name, (n, size)) for n, (name, size) in enumerate(zip(listed.names, listed.sizes, strict=True))]
            source, skipped = StreamedTarSource(str(root)), []
        tops = sorted({parts[0] for name, _ in members if (parts := parts_of(name))})
        wanted = {"train": ("train",), "val": ("val", "validation")}.get(split, ())
        picked = [t for t in tops if any(t == w or t.endswith(f"_{w}") for w in wanted)]
        prefix = picked[0] if len(tops) > 1 and len(picked) == 1 else None
        return entries_pool(root, folder_entries(root, source, members, prefix, skipped), self.name, num_classes, key)

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        """A compressed tar is decompressed once, its image sizes measured on a seeded sample of members whose
        first bytes were kept on the way (a plain tar's are read at their offsets)."""
        if compression_of(path) is None:
            return super().inspect(path, fields, verify, progress)
        from clusterdeck.jobs.formats.report import SIZE_SAMPLE, entries_report, size_stats
        from clusterdeck.jobs.shard.tarstream import StreamedTarSource, head_sizes, scan

        found = scan(path, keep=SIZE_SAMPLE)
        members = [(name, (n, size)) for n, (name, size) in enumerate(zip(found.names, found.sizes, strict=True))]
        entries = folder_entries(path, StreamedTarSource(str(path)), members, fields.get("prefix"), [])
        sizes = size_stats(*head_sizes(found.heads))
        return entries_report(path, self.name, entries, classed=True, image_sizes=sizes)


def _in_class_folder(name: str) -> bool:
    return len(parts_of(name)) >= 2 and name.lower().endswith(IMAGE_SUFFIXES)


FORMAT = ImageFolderTar()
