"""The [evaluate] section: which checkpoint is evaluated on which val split (``jobs.steps.evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from clusterdeck.jobs.spec import (
    Amp,
    Decode,
    ModelNameOrEmpty,
    OptionalExistingPath,
    OptionalPath,
    RunSpec,
    Section,
    Workers,
)
from clusterdeck.jobs.steps.train_spec import TrainResources, model_args_check, train_val_shards


class EvaluateResources(TrainResources):
    gpus_per_node: int = Field(1, ge=0, le=1)
    """One GPU (or 0 for the CPU): evaluation runs as one task."""
    mem_gb: float = Field(32, gt=0)
    time_min: int = Field(60, ge=1)


class EvaluateSpec(Section):
    checkpoint: OptionalExistingPath = None
    """A run's checkpoint (best.pt/last.pt) or a torchvision weights file; empty uses this run's [train] best."""
    val_shards: OptionalPath = None
    """A shard set directory whose val split is evaluated; empty uses the train step's val shards."""
    model: ModelNameOrEmpty = ""
    """Model builder name or 'module:callable'; empty takes it from the checkpoint (needed for a plain weights
    file)."""
    model_args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of a 'module:callable' model; empty takes the checkpoint's when the model is the same."""
    image_size: int | None = Field(None, ge=16, le=1024)
    """Crop size; empty takes it from the checkpoint's spec, else 224."""
    batch_size: int = Field(256, ge=1)
    """Samples per forward pass."""
    workers: Workers = "auto"
    """Loader processes: 'auto' is the task's CPUs minus one."""
    decode: Decode = "auto"
    """Where images are decoded: 'cpu', 'device' (nvJPEG on the GPU), 'pil' or 'auto', as for [train]."""
    amp: Amp = "bf16"
    """Autocast precision."""
    channels_last: bool = True
    """Channels-last memory format."""
    deterministic: bool = False
    """Deterministic cuDNN/cuBLAS kernels: the same figures from every evaluation of a checkpoint on a GPU."""
    resources: EvaluateResources = EvaluateResources()
    """sbatch resources of the evaluate step (one task)."""

    @model_validator(mode="after")
    def _model_args_need_own_model(self) -> EvaluateSpec:
        if self.model:
            model_args_check(self.model, self.model_args)
        return self


def evaluate_val_shards(spec: RunSpec) -> Path:
    """The shard set whose val split is evaluated: ``evaluate.val_shards``, else the train step's val shards,
    else this run's [shard] output."""
    assert spec.evaluate is not None
    if spec.evaluate.val_shards is not None:
        return spec.evaluate.val_shards
    if spec.train is not None:
        return train_val_shards(spec)
    assert spec.shard is not None
    return spec.shard.output
