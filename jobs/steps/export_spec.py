"""The [export] section: dense matrices of a shard set or npz batches (``jobs.steps.export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from clusterdeck.jobs.spec import DecodeWorkers, ExpandedPath, OptionalExistingPath, Resources, RunSpec, Section


class ExportSpec(Section):
    """Dense matrices for Apache SystemDS (CSV with .mtd metadata) or numpy (.npy), written by ``jobs.export``."""

    input: OptionalExistingPath = None
    """A shard set (with index.json) or a directory of npz batches; empty uses this run's [shard] output."""
    out: ExpandedPath
    """Directory for <name>_train_<size>.csv, <name>_train_labels_<size>.csv, the val pair and their .mtd files."""
    name: str = Field("imagenet", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    """First part of every file name."""
    size_gb: float | None = Field(None, gt=0, allow_inf_nan=False)
    """Target size of the four files together, in GB (10^9 bytes); turned into a sample count. Or give samples."""
    samples: int | None = Field(None, ge=1)
    """Samples to export, train and val together. Or give size_gb."""
    val_fraction: float = Field(0.2, ge=0, lt=1)
    """Share of the samples in the val files; 0 writes train files only."""
    seed: int = Field(0, ge=0, lt=2**63)  # numpy takes non-negative seeds only
    """Seed of which samples are chosen, their order and their split."""
    split: Literal["train", "val", "all"] = "train"
    """Which part of the input the samples come from: a shard set's split; in a directory of npz batches, val*
    files or the others (a single .npz file is read whole)."""
    image_size: int = Field(64, ge=1, le=1024)
    """Images are resized to image_size × image_size: a row holds 3 · image_size² values."""
    fit: Literal["squash", "crop"] = "squash"
    """How a non-square image becomes square: 'squash' resizes it whole (as downsampled ImageNet), 'crop'
    keeps its centre square."""
    layout: Literal["chw", "hwc"] = "chw"
    """Order of a row's values: 'chw' all red, then green, then blue (SystemDS conv2d); 'hwc' r,g,b per pixel."""
    format: Literal["csv", "npy"] = "csv"
    """'csv' (with .mtd files, for SystemDS) or 'npy' (float32 pixels, uint8 one-hot labels)."""
    decimals: int = Field(6, ge=3, le=17)
    """CSV: digits after the point (trailing zeros dropped); 3 is enough to recover every 8-bit level."""
    num_classes: int | None = Field(None, ge=1)
    """Width of the one-hot labels; empty: the input's class count (an npz input's highest label)."""
    workers: DecodeWorkers = "auto"
    """Processes that decode shard images; 'auto' is the task's CPUs. npz rows are read in the main process."""
    overwrite: bool = False
    """Replace files of the same names in out (only once the new ones are complete); else that is an error."""
    resources: Resources = Resources(cpus_per_task=8, mem_gb=8, time_min=240)
    """sbatch resources of the export step."""

    @model_validator(mode="after")
    def _one_size(self) -> ExportSpec:
        if (self.size_gb is None) == (self.samples is None):
            raise ValueError("give size_gb or samples" + (", not both" if self.size_gb is not None else ""))
        return self


def export_input(spec: RunSpec) -> Path:
    """What the export reads: ``export.input``, else this run's [shard] output."""
    assert spec.export is not None
    if spec.export.input is not None:
        return spec.export.input
    assert spec.shard is not None
    return spec.shard.output
