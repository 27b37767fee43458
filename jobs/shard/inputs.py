"""An image input listed by its format: the one dispatch the shard step and ``inspect`` share."""

from __future__ import annotations

from pathlib import Path

from jobs.shard.devkit import read_devkit
from jobs.shard.sources import Entries, ValLabels, list_ilsvrc_val, list_imagefolder, val_labels
from jobs.shard.tarsource import list_train_tar, list_val_tar


def read_val_labels(devkit: Path | None, ground_truth: Path | None, synsets: Path | None) -> ValLabels:
    """The val labels from the devkit, else from the ground truth and synsets (the spec checks one is given)."""
    if devkit is not None:
        return read_devkit(devkit)
    assert ground_truth is not None and synsets is not None
    return val_labels(ground_truth, synsets)


def list_images(fmt: str, path: Path, labels: ValLabels | None = None) -> Entries:
    """imagefolder, ilsvrc-train-tar, ilsvrc-val-tar or ilsvrc-val; ``labels`` class the val formats' images."""
    if fmt == "imagefolder":
        return list_imagefolder(path)
    if fmt == "ilsvrc-train-tar":
        return list_train_tar(path)
    assert labels is not None, f"{fmt} needs val labels"
    if fmt == "ilsvrc-val-tar":
        return list_val_tar(path, labels)
    return list_ilsvrc_val(path, labels)
