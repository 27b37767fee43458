"""The labels of the ILSVRC2012 val formats (``ilsvrc-val``, ``ilsvrc-val-tar``): the devkit, or the ground
truth and synsets. A spec must give one of them; ``inspect`` without them counts the images, classes unknown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats.base import Fields
from clusterdeck.jobs.shard.devkit import read_devkit
from clusterdeck.jobs.shard.sources import NOT_A_VAL_NAME, VAL_NAME, Entries, ValLabels, read_ground_truth, read_synsets

FIELDS = ("devkit", "ground_truth", "synsets")
FAMILY = "the ilsvrc-val formats"
NEEDS_LABELS = "unknown: give --devkit F (or --ground-truth F --synsets F) to label them"
Lister = Callable[[Path, ValLabels], Entries]


@dataclass(frozen=True)
class Unlabelled(ValLabels):
    """Val labels when no ground truth is given: every well-named image is listed, its class unknown."""

    def wnid_of(self, name: str) -> tuple[str | None, str]:
        if VAL_NAME.match(name):
            return "", ""
        return None, NOT_A_VAL_NAME


def check_fields(fmt: str, fields: Fields) -> None:
    """A spec's val input: the devkit, or the ground truth and synsets (ValueError otherwise)."""
    if "devkit" not in fields:
        missing = [k for k in ("ground_truth", "synsets") if k not in fields]
        if missing:
            raise ValueError(f"format {fmt!r} needs {' and '.join(missing)}, or devkit")
    elif "ground_truth" in fields or "synsets" in fields:
        raise ValueError("give devkit, or ground_truth and synsets, not both")


def read_val_labels(fields: Fields) -> ValLabels:
    """The val labels from the devkit, else from the ground truth and synsets (``check_fields`` has run)."""
    if "devkit" in fields:
        return read_devkit(fields["devkit"])
    id_to_wnid = read_synsets(fields["synsets"])
    truth = fields["ground_truth"]
    return ValLabels(id_to_wnid, read_ground_truth(truth, len(id_to_wnid)), truth.name)


def optional_labels(fields: Fields) -> ValLabels | None:
    """``inspect``'s options for labels: none, the devkit, or the ground truth with the synsets."""
    if "devkit" in fields and ("ground_truth" in fields or "synsets" in fields):
        raise UserError("--devkit: give the devkit, or --ground-truth with --synsets, not both")
    if "devkit" in fields or ("ground_truth" in fields and "synsets" in fields):
        return read_val_labels(fields)
    if "ground_truth" in fields:
        raise UserError("--ground-truth: needs --synsets too (the class of each ILSVRC2012_ID), or give --devkit")
    if "synsets" in fields:
        raise UserError("--synsets: a val input needs --ground-truth too (the ID of each image), or give --devkit")
    return None


def val_report(path: Path, fmt: str, fields: Fields, lister: Lister) -> dict[str, Any]:
    """``inspect``'s report of a val input: classed when labels are given, else counted."""
    from clusterdeck.jobs.formats.report import entries_report

    labels = optional_labels(fields)
    entries = lister(path, labels if labels is not None else Unlabelled([], [], ""))
    return entries_report(path, fmt, entries, classed=labels is not None, note=NEEDS_LABELS)
