"""Listings of inputs, made without reading their images: what each sample is called, where it is, its class.

A listing is the canonical, sorted order of a split's samples; the shuffle is applied on
top of it, so the same input and seed always give the same shards. Each input format
(``jobs.formats``) lists its samples as ``Entries`` with a ``Source`` that reads one sample
given its locator (``loc``); sources are small, picklable values, sent to the writer
processes inside each shard's job. ``FileSource`` reads files under a directory; the
ILSVRC2012 val names and labels (``ValLabels``) are here too, shared by the val formats and
``val-sort``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # numpy loads with the listing only: the CLI and the app import this module at start
    import numpy as np

from clusterdeck.jobs.errors import UserError

VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)
NOT_A_VAL_NAME = "not an ILSVRC2012_val_XXXXXXXX.JPEG name"


class Source(Protocol):
    def read(self, loc: Any) -> Any:
        """One sample's raw content: the file's bytes, or an HxWx3 uint8 array; OSError if unreadable."""
        ...

    def raw_size(self, loc: Any) -> int | None:
        """The bytes ``read`` would give, without reading them (None: unknown, or unreadable)."""
        ...


@dataclass(frozen=True)
class FileSource:
    root: str

    def read(self, loc: str) -> bytes:
        with open(os.path.join(self.root, loc), "rb") as f:
            return f.read()

    def raw_size(self, loc: str) -> int | None:
        try:
            return os.stat(os.path.join(self.root, loc)).st_size
        except OSError:
            return None


@dataclass
class Entries:
    """An input's samples before class indices are assigned: names, locators and wnids, in canonical order."""

    source: Source
    names: list[str]  # how the sample is called in its shard's .json ("<wnid>/<file>", a member, "<file>#<row>")
    locs: list[Any]
    wnids: list[str]
    classes: list[str]  # every class the input declares, sorted
    skipped: list[dict[str, str]] = field(default_factory=list)

    def add(self, name: str, loc: Any, wnid: str) -> None:
        self.names.append(name)
        self.locs.append(loc)
        self.wnids.append(wnid)


@dataclass
class Listing:
    """A split's samples with class indices; samples of classes outside the shard set are ``excluded``.

    The labels are an int32 array, not a list of ints: at ImageNet-21K's 13 M samples a list of Python ints
    alone takes 470 MB (``bench/plan_scale.py``)."""

    source: Source
    names: list[str]
    locs: list[Any]
    labels: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)
    excluded: int = 0

    def __len__(self) -> int:
        return len(self.names)


def labelled(entries: Entries, classes: Sequence[str]) -> Listing:
    """Class indices from the shard set's class list; samples of any other class are left out and counted."""
    import numpy as np

    index = {wnid: i for i, wnid in enumerate(classes)}
    labels = np.empty(len(entries.names), np.int32)
    listing = Listing(entries.source, [], [], labels, list(entries.skipped))
    kept = 0
    for name, loc, wnid in zip(entries.names, entries.locs, entries.wnids, strict=True):
        label = index.get(wnid)
        if label is None:
            listing.excluded += 1
            continue
        listing.names.append(name)
        listing.locs.append(loc)
        labels[kept] = label
        kept += 1
    listing.labels = labels[:kept]
    return listing


def select_classes(available: list[str], wanted: int | list[str] | None, where: str) -> list[str]:
    """``shard.classes``: all of them, the first K in sorted order, or the listed wnids (kept sorted)."""
    if wanted is None:
        return available
    if isinstance(wanted, int):
        if wanted > len(available):
            raise UserError(f"shard.classes: {wanted} asked, but {where} has {len(available)} classes")
        return available[:wanted]
    known = set(available)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise UserError(f"shard.classes: {unknown[0]} is not a class of {where} ({len(unknown)} unknown)")
    return sorted(set(wanted))


def read_synsets(path: Path) -> list[str]:
    """wnids in ILSVRC2012_ID order, from a devkit meta.mat or a text file (first word of each line)."""
    if path.suffix == ".mat":
        wnids = synsets_from_meta_mat(path)
    else:
        wnids = [line.split()[0] for line in read_text(path).splitlines() if line.strip()]
    if not wnids:
        raise UserError(f"{path}: no synsets found")
    if len(set(wnids)) != len(wnids):
        twice = next(w for w in wnids if wnids.count(w) > 1)
        raise UserError(f"{path}: {twice} is listed twice (is this the synsets file?)")
    return wnids


def read_text(path: Path) -> str:
    """A small text input (synsets, ground truth); UserError naming it if it cannot be read as text."""
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def synsets_from_meta_mat(path: Path | Any, name: str | None = None) -> list[str]:
    """The devkit's leaf synsets (num_children = 0) in ILSVRC2012_ID order, as torchvision reads them.

    ``path`` may be an open binary file (a member of the devkit archive); ``name`` then names it in errors.
    """
    from scipy.io import loadmat

    try:
        synsets = loadmat(path, squeeze_me=True)["synsets"]
        leaves = sorted((int(s["ILSVRC2012_ID"]), str(s["WNID"])) for s in synsets if int(s["num_children"]) == 0)
    except (KeyError, ValueError, IndexError, TypeError, OSError) as exc:
        raise UserError(f"{name or path}: not a devkit meta.mat with a 'synsets' array ({exc})") from None
    return [wnid for _, wnid in leaves]


@dataclass(frozen=True)
class ValLabels:
    """What names a validation image's class: its number's ground-truth line, an ILSVRC2012_ID."""

    id_to_wnid: list[str]  # index 0 is ILSVRC2012_ID 1
    truth: list[int]  # the ILSVRC2012_ID of val image n at index n - 1
    truth_name: str

    def wnid_of(self, name: str) -> tuple[str | None, str]:
        """(wnid, "") for a val image's file name, or (None, why it has none)."""
        match = VAL_NAME.match(name)
        if not match:
            return None, NOT_A_VAL_NAME
        number = int(match.group(1))
        if not 1 <= number <= len(self.truth):
            return None, f"no line {number} in {self.truth_name}"
        return self.id_to_wnid[self.truth[number - 1] - 1], ""


def val_entries(source: Source, found: list[tuple[str, Any]], labels: ValLabels) -> Entries:
    """Val images (name, locator), sorted by name and labelled by their number; others skipped, with why."""
    entries = Entries(source, [], [], [], sorted(labels.id_to_wnid))
    for name, loc in sorted(found):
        wnid, why = labels.wnid_of(name)
        if wnid is None:
            entries.skipped.append({"path": name, "reason": why})
        else:
            entries.add(name, loc, wnid)
    return entries


def read_ground_truth(path: Path, synset_count: int) -> list[int]:
    return parse_ground_truth(read_text(path), str(path), synset_count)


def parse_ground_truth(text: str, name: str, synset_count: int) -> list[int]:
    ids = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = int(line)
        except ValueError:
            raise UserError(f"{name}:{lineno}: expected an ILSVRC2012_ID, got {line.strip()!r}") from None
        if not 1 <= value <= synset_count:
            raise UserError(f"{name}:{lineno}: ILSVRC2012_ID {value} is outside 1..{synset_count}")
        ids.append(value)
    return ids
