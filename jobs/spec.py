"""Run specs: typed, validated once, with errors that name the key path.

A spec is a TOML file; ``--set key.path=value`` overrides are applied to the
parsed table before validation, so every problem, from the file or the command
line, is reported the same way: one line per problem, naming the key.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jobs.errors import UserError
from jobs.formats import registry as input_formats
from jobs.model_names import MODEL_NAMES, unknown_model_message
from jobs.specfile import apply_overrides, read_table

KEY = re.compile(r"[a-z_]+(\.[a-z_0-9]+)*")
"""A spec key path, as problems name them: ``train.resources.gpus_per_node``."""
_UNSET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def expand_vars(value: Any) -> Any:
    """Expand ``~`` and ``$VARS``; an unset variable is an error, not a literal ``$``."""
    if not isinstance(value, str):
        return value
    expanded = os.path.expanduser(os.path.expandvars(value))
    missing = _UNSET_VAR.search(expanded)
    if missing:
        raise ValueError(f"environment variable ${missing.group(1)} is not set")
    return expanded


def _must_exist(path: Path, info: ValidationInfo) -> Path:
    if not (info.context or {}).get("check_paths", True):
        return path
    try:
        found = path.exists()
    except OSError as exc:  # a name too long, a hung mount answering with an error
        raise ValueError(f"cannot check {path}: {exc.strerror}") from None
    if not found:
        raise ValueError(f"path does not exist: {path}")
    return path


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else expand_vars(value)


def _known_model(name: str) -> str:
    if name not in MODEL_NAMES:
        raise ValueError(unknown_model_message(name))
    return name


ExpandedPath = Annotated[Path, BeforeValidator(expand_vars)]
ExistingPath = Annotated[Path, BeforeValidator(expand_vars), AfterValidator(_must_exist)]
# ``""`` in a spec means "not given": the default is worked out from the rest of the spec.
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]
OptionalExistingPath = Annotated[
    Path | None, BeforeValidator(_empty_is_none), AfterValidator(lambda p, info: p and _must_exist(p, info))
]
ModelName = Annotated[str, AfterValidator(_known_model)]
Amp = Literal["bf16", "fp16", "off"]
Decode = Literal["auto", "cpu", "device", "pil"]


def _process_count(what: str) -> Any:
    def check(value: Any) -> Any:
        if value == "auto" or (type(value) is int and value >= 0):
            return value
        raise ValueError(f"a number of {what} or 'auto', not {value!r}")

    return BeforeValidator(check)


Workers = Annotated[int | Literal["auto"], _process_count("loader processes (0: load in the training process)")]
DecodeWorkers = Annotated[int | Literal["auto"], _process_count("decoding processes (0 or 1: in the main process)")]


class Section(BaseModel):
    # inf and nan are TOML floats, but no key means them: refused here, not met later as an OverflowError
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)


class Resources(Section):
    """sbatch resources of one step; mapped to submitit in ``jobs.dispatch.resources``."""

    partition: str = ""
    """SLURM partition; empty uses the cluster's default."""
    account: str = ""
    """SLURM account to charge (--account)."""
    qos: str = ""
    """SLURM quality of service (--qos)."""
    cpus_per_task: int = Field(4, ge=1)
    """CPU cores for each task."""
    mem_gb: float = Field(16, gt=0)
    """Memory per node in GB."""
    time_min: int = Field(60, ge=1)
    """Wall-clock limit in minutes."""
    nodes: int = Field(1, ge=1)
    """Number of nodes."""
    tasks_per_node: int = Field(1, ge=1)
    """Tasks (processes) per node."""
    constraint: str = ""
    """Node features required (--constraint)."""
    extra_sbatch: list[str] = []
    """More sbatch options, each as ``--key=value`` or ``--flag``."""
    setup: list[str] = []
    """Shell lines run before the payload, e.g. ``module load cuda`` or ``source venv/bin/activate``."""


class ShardResources(Resources):
    array_tasks: int = Field(1, ge=1, le=1000)
    """More than 1: the shard step runs as a SLURM job array of this many tasks."""


@dataclass(frozen=True)
class Choices:
    """Annotated metadata of a text key whose values a registry lists: the form offers them, asked when drawn."""

    names: Callable[[], list[str]]


def _known_format(name: str) -> str:
    known = input_formats.shard_names()
    if name not in known:
        listed = [repr(n) for n in known]
        head = ", ".join(listed[:-1])
        raise ValueError(f"Input should be {f'{head} or ' if head else ''}{listed[-1]}")
    return name


ShardFormat = Annotated[str, AfterValidator(_known_format), Choices(input_formats.shard_names)]
"""A name from the input-format registry (``jobs.formats.registry``)."""


class ShardInput(Section):
    input: ExistingPath
    """The split's images, laid out as ``format`` says."""
    format: ShardFormat = input_formats.DEFAULT
    """How ``input`` is laid out: a name from the input formats (``jobs.formats``), e.g. class folders
    (<wnid>/<file>.JPEG), the ILSVRC2012 val directory or tars, downsampled-ImageNet batches."""
    devkit: ExistingPath | None = None
    """Val labels: ILSVRC2012_devkit_t12.tar.gz or its extracted directory (meta.mat, val ground truth)."""
    ground_truth: ExistingPath | None = None
    """Val labels without devkit: ILSVRC2012_IDs (1-based), one per line, in file-name order."""
    synsets: ExistingPath | None = None
    """Val labels without devkit: meta.mat, or one wnid per line in ILSVRC2012_ID order. Downsampled batches:
    one wnid per line in label order (map_clsloc.txt); without it classes are named by label number."""

    @property
    def fields(self) -> dict[str, Path]:
        """The optional keys given, as the input's format reads them."""
        return self.model_dump(exclude={"input", "format"}, exclude_none=True)

    @model_validator(mode="after")
    def _fields_fit_the_format(self) -> ShardInput:
        fmt = input_formats.get(self.format)
        assert fmt is not None  # the format is checked first
        extra = input_formats.unread(fmt, self.fields)
        if extra:
            raise ValueError(f"{' and '.join(extra)} only apply to {input_formats.readers(extra)}, not {fmt.name!r}")
        fmt.check(self.input, self.fields)
        return self


class ShardSpec(Section):
    output: ExpandedPath
    """Directory for train-000000.tar …, val-000000.tar … and index.json."""
    shard_size_mb: float = Field(1024, gt=0)
    """Target size of one shard in MB."""
    max_samples: int | None = Field(None, ge=1)
    """At most this many samples in one shard."""
    seed: int = 0
    """Seed of the global permutation."""
    workers: int = Field(8, ge=1)
    """Processes that write shards inside one task."""
    max_skipped_fraction: float = Field(0.01, ge=0, le=1)
    """The step fails when more than this fraction of inputs is unreadable or not an image."""
    classes: StrictInt | list[str] | None = None
    """A class subset: the first K classes in sorted wnid order, or a list of wnids; val keeps only these."""
    resize_shorter: int | None = Field(None, ge=8)
    """Pre-resize: scale images down so the shorter side is this many px (JPEG); empty keeps the original bytes."""
    jpeg_quality: int | None = Field(None, ge=1, le=100)
    """JPEG quality of re-encoded images (90 when resizing); for npz inputs, JPEG instead of lossless PNG."""
    train: ShardInput | None = None
    """The training split."""
    val: ShardInput | None = None
    """The validation split."""
    resources: ShardResources = ShardResources(cpus_per_task=8, mem_gb=32, time_min=240)
    """sbatch resources of the shard step."""

    @field_validator("classes")
    @classmethod
    def _classes_named(cls, value: int | list[str] | None) -> int | list[str] | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("a class count must be at least 1")
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list keeps no class; leave it out to keep them all")
            return sorted(set(value))  # the same subset however it is written
        return value

    @model_validator(mode="after")
    def _needs_a_split(self) -> ShardSpec:
        if self.train is None and self.val is None:
            raise ValueError("needs [shard.train] or [shard.val]")
        return self


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


class EvaluateResources(TrainResources):
    gpus_per_node: int = Field(1, ge=0, le=1)
    """One GPU (or 0 for the CPU): evaluation runs as one task."""
    mem_gb: float = Field(32, gt=0)
    time_min: int = Field(60, ge=1)


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


class TrainSpec(Section):
    model: ModelName = "resnet50"
    """Any torchvision.models classification builder name, e.g. resnet50."""
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
    seed: int = 0
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
    def _nesterov_needs_momentum(self) -> TrainSpec:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        return self


class EvaluateSpec(Section):
    checkpoint: OptionalExistingPath = None
    """A run's checkpoint (best.pt/last.pt) or a torchvision weights file; empty uses this run's [train] best."""
    val_shards: OptionalPath = None
    """A shard set directory whose val split is evaluated; empty uses the train step's val shards."""
    model: Annotated[str, AfterValidator(lambda m: m and _known_model(m))] = ""
    """Model builder name; empty takes it from the checkpoint (needed for a plain weights file)."""
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
    seed: int = 0
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


class ClusterSpec(Section):
    executor: Literal["local", "slurm"] = "local"
    """``local`` runs steps on this machine (submitit's LocalExecutor); ``slurm`` submits with sbatch."""
    runs_root: ExpandedPath | None = None
    """Where run records live; default $CLUSTERDECK_HOME/runs or ~/.clusterdeck/runs."""
    python: str = ""
    """Python interpreter on the compute nodes; empty uses the one running clusterdeck."""


class TelemetrySpec(Section):
    interval_s: float = Field(1.0, ge=0, le=3600)
    """Seconds between the samples every job writes (CPU, memory, I/O, data pipeline, GPU); 0 turns them off."""


class RunSpec(Section):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\n\r/\x00]+$")
    """A name for humans; need not be unique."""
    cluster: ClusterSpec = ClusterSpec()
    """Where and how the steps run."""
    shard: ShardSpec | None = None
    """Shard an image dataset into shuffled webdataset tars."""
    train: TrainSpec | None = None
    """Train a torchvision classifier on a shard set."""
    evaluate: EvaluateSpec | None = None
    """Top-1/top-5 of a checkpoint on a val split."""
    export: ExportSpec | None = None
    """Dense CSV (or .npy) matrices of a shard set or npz batches, for Apache SystemDS."""
    telemetry: TelemetrySpec = TelemetrySpec()
    """What every job samples about itself while it runs."""

    @property
    def steps(self) -> list[str]:
        return [name for name in STEPS if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _inputs_have_a_source(self) -> RunSpec:
        if self.train is not None and self.train.train_shards is None and self.shard is None:
            raise ValueError("train.train_shards: required when the spec has no [shard] section")
        if self.evaluate is not None:
            if self.evaluate.checkpoint is None and self.train is None:
                raise ValueError("evaluate.checkpoint: required when the spec has no [train] section")
            if self.evaluate.val_shards is None and self.train is None and self.shard is None:
                raise ValueError("evaluate.val_shards: required when the spec has no [train] or [shard] section")
        if self.export is not None and self.export.input is None and self.shard is None:
            raise ValueError("export.input: required when the spec has no [shard] section")
        if self.export is not None and (self.export.resources.tasks_per_node, self.export.resources.nodes) != (1, 1):
            raise ValueError("export.resources: an export runs as one task on one node")
        if self.evaluate is not None and (self.evaluate.resources.tasks, self.evaluate.resources.nodes) != (1, 1):
            raise ValueError("evaluate.resources: evaluation runs as one task on one node")
        return self

    def train_shards(self) -> Path:
        assert self.train is not None
        if self.train.train_shards is not None:
            return self.train.train_shards
        assert self.shard is not None
        return self.shard.output

    def train_val_shards(self) -> Path:
        assert self.train is not None
        return self.train.val_shards or self.train_shards()

    def evaluate_val_shards(self) -> Path:
        assert self.evaluate is not None
        if self.evaluate.val_shards is not None:
            return self.evaluate.val_shards
        if self.train is not None:
            return self.train_val_shards()
        assert self.shard is not None
        return self.shard.output

    def export_input(self) -> Path:
        assert self.export is not None
        if self.export.input is not None:
            return self.export.input
        assert self.shard is not None
        return self.shard.output


STEPS = ("shard", "export", "train", "evaluate")


def validate(table: dict[str, Any], *, source: str = "spec", check_paths: bool = True) -> RunSpec:
    try:
        return RunSpec.model_validate(table, context={"check_paths": check_paths})
    except ValidationError as exc:
        raise UserError(*(f"{source}: {line}" for line in describe_errors(exc))) from None


def load_spec(path: Path, overrides: Sequence[str] = (), *, check_paths: bool = True) -> RunSpec:
    """The one way a spec is read: file, then ``--set`` overrides, then validation."""
    table = apply_overrides(read_table(path), list(overrides))
    return validate(table, source=str(path), check_paths=check_paths)


def describe_errors(exc: ValidationError) -> list[str]:
    return [f"{key}: {text}" if key else text for key, text in error_items(exc)]


def error_items(exc: ValidationError) -> list[tuple[str, str]]:
    """(key path, problem) per error; a check across sections gives the key it names, or ``""``."""
    items = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        if err["type"] == "extra_forbidden":
            hint = _closest_key(loc)
            items.append((key, "unknown key" + (f" (did you mean '{hint}'?)" if hint else "")))
        elif err["type"] == "missing":
            items.append((key, "required key is missing"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if not loc:  # a check across sections names its own keys: "train.train_shards: required when …"
                named, sep, rest = msg.partition(": ")
                items.append((named, rest) if sep and KEY.fullmatch(named) else ("", msg))
                continue
            items.append((key, f"{msg} (got {err['input']!r})" if _show_input(err) else msg))
    return items


def _show_input(err: Any) -> bool:
    return not isinstance(err.get("input"), dict) and err["type"] != "value_error"


def _closest_key(loc: list[str]) -> str | None:
    """The valid key nearest to a misspelt one, as a full key path."""
    model: Any = RunSpec
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _section_type(field.annotation)
        if model is None:
            return None
    match = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return ".".join([*loc[:-1], match[0]]) if match else None


def _section_type(annotation: Any) -> type[Section] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None
