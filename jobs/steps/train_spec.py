"""The [train] section: hyperparameters, staging and resources of the train step (``jobs.steps.train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from clusterdeck.jobs.model_ref import is_model_ref
from clusterdeck.jobs.spec import (
    Amp,
    Decode,
    ModelName,
    OptionalExistingPath,
    OptionalPath,
    Resources,
    RunSpec,
    Section,
    Workers,
)


class TrainResources(Resources):
    partition: str = "gpu"
    gpus_per_node: int = Field(8, ge=0, le=64)
    """GPUs on each node; one task (process) runs per GPU. 0 trains on CPUs."""
    tasks_per_node: int = Field(0, ge=0)
    """Processes per node; 0 means one per GPU, or 1 without GPUs. On CPUs, more than 1 trains with gloo."""
    cpus_per_task: int = Field(8, ge=1)
    mem_gb: float = Field(64, gt=0)
    time_min: int = Field(2880, ge=1)
    signal_delay_s: int = Field(120, ge=5)
    """SLURM sends USR2 this long before the time limit: the job checkpoints and requeues itself."""

    @property
    def tasks(self) -> int:
        return self.tasks_per_node or max(self.gpus_per_node, 1)

    @model_validator(mode="after")
    def _one_task_per_gpu(self) -> TrainResources:
        if self.gpus_per_node and self.tasks_per_node not in (0, self.gpus_per_node):
            raise ValueError(
                f"tasks_per_node {self.tasks_per_node} with gpus_per_node {self.gpus_per_node}: "
                "one task runs per GPU; leave tasks_per_node at 0"
            )
        return self


class StageSpec(Section):
    """Copying the shards to node-local disk at the start of the train job (``jobs.stage``)."""

    mode: Literal["before", "ahead", "none"] = "none"
    """'before': copy, then train; 'ahead': train as soon as the first shards are local; 'none': read in place."""
    to: str = "$SLURM_TMPDIR"
    """Node-local directory; $VARS and ~ are expanded on the node when the job starts."""
    scope: Literal["all", "node"] = "all"
    """'all': every node copies every shard; 'node': only the shards its ranks read (fixed per node)."""
    streams: int = Field(4, ge=1, le=64)
    """Files copied in parallel."""
    keep: bool = False
    """Keep the copies after the job: a node cache that later jobs staging to the same path reuse."""
    max_mb_s: float = Field(0, ge=0)
    """Cap on the copy rate in MB/s, to spare a busy shared filesystem; 0 is no cap."""

    @field_validator("to")
    @classmethod
    def _absolute_or_variable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a node-local directory, e.g. $SLURM_TMPDIR or /local/ssd/$USER/cache")
        if not value.startswith(("$", "~", "/")):
            raise ValueError(f"{value!r} is relative; give an absolute path or one starting with a $VARIABLE")
        return value


class Staged(Protocol):
    """A step section that stages shards ([train], [script]): how, and the seed of the read order it follows."""

    @property
    def stage(self) -> StageSpec: ...

    @property
    def seed(self) -> int: ...


class TrainSpec(Section):
    model: ModelName = "resnet50"
    """Any torchvision.models classification builder name, e.g. resnet50, or your own as 'module:callable' (called
    with num_classes= and model_args; the module is imported from the job's working directory or PYTHONPATH)."""
    model_args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of a 'module:callable' model, beside num_classes (a TOML table: [train.model_args])."""
    train_shards: OptionalPath = None
    """A shard set directory (with index.json); empty uses this run's [shard] output."""
    val_shards: OptionalPath = None
    """The shard set whose val split is evaluated each epoch; empty uses train_shards."""
    image_size: int = Field(224, ge=16, le=1024)
    """Crop size in pixels: 224 for ImageNet, 64 for downsampled ImageNet."""
    epochs: int = Field(90, ge=1)
    """Passes over the train split."""
    batch_size: int = Field(256, ge=1)
    """Samples per GPU (per task) in one forward pass."""
    grad_accum: int = Field(1, ge=1)
    """Forward passes per optimizer step; the effective batch is batch_size × tasks × grad_accum."""
    optimizer: Literal["sgd", "adamw"] = "sgd"
    """sgd (momentum, nesterov, weight_decay) or adamw (weight_decay)."""
    lr: float = Field(0.1, gt=0)
    """Peak learning rate (after warmup; onecycle's max_lr)."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum."""
    nesterov: bool = False
    """SGD with Nesterov momentum."""
    weight_decay: float = Field(1e-4, ge=0)
    """L2 penalty (sgd) or decoupled weight decay (adamw)."""
    schedule: Literal["step", "cosine", "onecycle"] = "step"
    """Learning-rate schedule, stepped every optimizer step."""
    step_size: int = Field(30, ge=1)
    """step: epochs between decays."""
    gamma: float = Field(0.1, gt=0, le=1)
    """step: factor of each decay."""
    warmup_epochs: float = Field(0, ge=0)
    """step and cosine: linear warmup from lr/100 over this many epochs."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Cross-entropy label smoothing."""
    mixup_alpha: float = Field(0.0, ge=0)
    """Mixup's Beta(alpha, alpha); 0 turns it off."""
    cutmix_alpha: float = Field(0.0, ge=0)
    """CutMix's Beta(alpha, alpha); 0 turns it off. With mixup, each batch uses one of the two."""
    auto_augment: Literal["", "imagenet", "randaugment"] = ""
    """Extra train augmentation: AutoAugment's ImageNet policy or RandAugment."""
    amp: Amp = "bf16"
    """Autocast precision: bf16, fp16 (with a gradient scaler) or off."""
    channels_last: bool = True
    """Model and inputs in channels-last memory format (faster convolutions on tensor cores)."""
    deterministic: bool = False
    """Deterministic cuDNN/cuBLAS kernels, so a resumed run ends with the same weights as an uninterrupted one on
    a GPU too (slower; a model using a kernel with no deterministic version fails). Data order is exact either way."""
    workers: Workers = "auto"
    """Loader processes per task: 'auto' is the task's CPUs minus one; 0 decodes in the training process."""
    decode: Decode = "auto"
    """Where images are decoded: 'cpu' (loader workers, reduced-size JPEG decoding), 'device' (batched nvJPEG on
    the GPU), 'pil' (the full-size PIL reference); 'auto' is 'device' on CUDA with fewer than 8 CPUs per task."""
    checkpoint_every_min: float = Field(10, ge=0)
    """Minutes between checkpoints of ``last``; 0 checkpoints at every log step."""
    weights: OptionalExistingPath = None
    """A state_dict or checkpoint (.pth/.pt) to start from; never downloaded. Its class count must match."""
    seed: int = Field(0, ge=0, lt=2**63)  # numpy and torch take non-negative seeds that fit 64 bits
    """Seed of initialisation, data order and augmentation."""
    log_every_steps: int = Field(20, ge=1)
    """Optimizer steps between metrics records (and between checks for a requested stop)."""
    shuffle_buffer: int = Field(1000, ge=1)
    """Samples shuffled together while a shard is read (the shards themselves are already shuffled)."""
    max_requeues: int = Field(3, ge=0)
    """Times a job that reaches its time limit checkpoints and requeues itself before it fails."""
    stage: StageSpec = StageSpec()
    """Copying the shards to node-local disk before or while training."""
    resources: TrainResources = TrainResources()
    """sbatch resources of the train step."""

    @model_validator(mode="after")
    def _model_args_need_own_model(self) -> TrainSpec:
        model_args_check(self.model, self.model_args)
        return self

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> TrainSpec:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        return self


def model_args_check(model: str, model_args: dict[str, Any]) -> None:
    if model_args and not is_model_ref(model):
        raise ValueError(f"model_args is only for a 'module:callable' model, not {model!r}")
    if "num_classes" in model_args:
        raise ValueError("model_args: num_classes comes from the shard set; leave it out")


def train_shards(spec: RunSpec) -> Path:
    """The shard set the train step reads: ``train.train_shards``, else this run's [shard] output."""
    assert spec.train is not None
    if spec.train.train_shards is not None:
        return spec.train.train_shards
    assert spec.shard is not None
    return spec.shard.output


def train_val_shards(spec: RunSpec) -> Path:
    """The shard set whose val split the train step evaluates each epoch."""
    assert spec.train is not None
    return spec.train.val_shards or train_shards(spec)
