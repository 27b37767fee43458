"""What an input format is: one object per layout of images, listed in ``jobs.formats.registry``.

A format answers, for a path: is this me (``detect``)? are these ``[shard.<split>]`` keys right for me
(``fields``, ``check``)? which samples are there (``entries``, what the shard step shards)? what does
``inspect`` report (``inspect``)? and, for the formats ``export`` reads, the pool of samples it exports
(``export_pool``). The optional keys of an input (``devkit``, ``ground_truth``, ``synsets``) are given as
``Fields``, the same for a spec's ``[shard.<split>]`` table and ``inspect``'s options.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from clusterdeck.jobs.shard.sources import Entries

Fields = Mapping[str, Any]
"""The optional keys of an input that are given, by name: paths (``devkit``, ``ground_truth``, ``synsets``) and
texts (``split``, ``labels``, ``prefix``)."""
Key = Callable[[str], str]
"""How a setting is named in errors: ``export.split`` in a spec, ``--split`` on the command line."""
ByteProgress = Callable[[int, int], None]
"""What ``inspect`` tells of its reading: (bytes just read, bytes it reads in all); called from several threads."""


class InputFormat:
    """One input format. Subclasses set the class attributes and implement what applies to them."""

    name: ClassVar[str]
    """What ``format =`` and ``--format`` call it."""
    looks_like: ClassVar[str]
    """What ``detect`` looks for, as errors say it: ``class folders``, ``a shard set (index.json)``."""
    path_kind: ClassVar[Literal["dir", "file", "any"]] = "any"
    """What ``input`` must be."""
    suffix: ClassVar[str] = ""
    """How the name of a file in this format ends (``.tar``), as errors say it."""
    fields: ClassVar[tuple[str, ...]] = ()
    """The optional keys of an input this format reads; any other given is refused."""
    family: ClassVar[str] = ""
    """How errors name the formats that share this one's fields (``the ilsvrc-val formats``); empty: its name."""
    shardable: ClassVar[bool] = True
    """A ``[shard.<split>]`` input can be in this format (it has ``entries``)."""
    exportable: ClassVar[bool] = False
    """``export`` reads it (it has ``export_pool``)."""
    stored_as_is: ClassVar[bool] = True
    """Without re-encoding, the shards hold the input's image bytes as they are, so the input's size bounds
    theirs (checked at submit); False where samples are encoded anew (arrays become PNGs)."""

    def detect(self, path: Path) -> bool:
        """``path`` is in this format. May raise UserError where it clearly means to be and cannot be read
        (a compressed tar)."""
        raise NotImplementedError

    def check(self, path: Path, fields: Fields) -> None:
        """The spec's checks of an input in this format, beyond which keys it reads: a ValueError says the
        problem. Here: ``path`` is a file or a directory as ``path_kind`` says."""
        if self.path_kind == "dir" and path.is_file():
            raise ValueError(f"format {self.name!r} needs a directory; {path} is a file")
        if self.path_kind == "file" and path.is_dir():
            what = self.suffix or "input"
            raise ValueError(f"format {self.name!r} reads the {what} file itself; {path} is a directory")

    def streamed(self, path: Path, fields: Fields) -> bool:
        """The input is read front to back only (``jobs.shard.spill``): a job array spills it once, first. Asked at
        submit, so it must be cheap (no listing)."""
        return False

    def preflight(self, path: Path, fields: Fields) -> None:
        """The checks at submit that read the input's content (``check`` runs on every load of a spec, so it
        stays cheap): a UserError says the problem. Here: none."""

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        """The samples at ``path``, in canonical order, with their wnids. ``cache``: where the shard step lets
        a format keep derived copies (``inspect`` gives none: it writes nothing)."""
        raise NotImplementedError(f"format {self.name!r} is not a shard input")

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        """``clusterdeck inspect``'s report (the ``inspect-report`` document): here, the listing's counts,
        classes, bytes and image sizes. ``verify`` and ``progress`` are for the formats that check their
        content byte by byte (shard sets)."""
        from clusterdeck.jobs.formats.report import entries_report

        return entries_report(path, self.name, self.entries(path, fields), classed=True)

    def export_pool(self, root: Path, split: str, num_classes: int | None, key: Key) -> Any:
        """What ``export`` reads: a ``jobs.export.inputs.Pool`` of ``split``'s samples."""
        raise NotImplementedError(f"format {self.name!r} is not an export input")


def visible(path: Path) -> tuple[list[str], list[str]]:
    """(files, folders) directly in the directory ``path``, names not starting with a dot; folders sorted."""
    with os.scandir(path) as found:
        entries = [e for e in found if not e.name.startswith(".")]
    return [e.name for e in entries if e.is_file()], sorted(e.name for e in entries if e.is_dir())
