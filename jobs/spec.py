"""Run specs: the parts every spec has, the types step sections are built from, and errors that name the key path.

A spec is a TOML file; ``--set key.path=value`` overrides are applied to the
parsed table before validation (``jobs.runspec``), so every problem, from the file or
the command line, is reported the same way: one line per problem, naming the key.
Each step kind's section lives with the step (``jobs.steps``); the [shard] section is
still here (its input formats are a registry of their own).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

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

from clusterdeck.jobs.envvars import expand_vars
from clusterdeck.jobs.formats import registry as input_formats
from clusterdeck.jobs.model_names import MODEL_NAMES, unknown_model_message
from clusterdeck.jobs.model_ref import is_model_ref, ref_syntax_problem

KEY = re.compile(r"[a-z_]+(\.[a-z_0-9]+)*")
"""A spec key path, as problems name them: ``train.resources.gpus_per_node``."""


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
    """A torchvision builder's name, or a user's ``module:callable`` (its module is looked for at submit)."""
    if is_model_ref(name):
        problem = ref_syntax_problem(name)
        if problem:
            raise ValueError(problem)
        return name
    if name not in MODEL_NAMES:
        raise ValueError(unknown_model_message(name))
    return name


def _known_model_or_empty(name: str) -> str:
    return name and _known_model(name)


ExpandedPath = Annotated[Path, BeforeValidator(expand_vars)]
ExistingPath = Annotated[Path, BeforeValidator(expand_vars), AfterValidator(_must_exist)]
# ``""`` in a spec means "not given": the default is worked out from the rest of the spec.
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]
OptionalExistingPath = Annotated[
    Path | None, BeforeValidator(_empty_is_none), AfterValidator(lambda p, info: p and _must_exist(p, info))
]
ModelName = Annotated[str, AfterValidator(_known_model)]
ModelNameOrEmpty = Annotated[str, AfterValidator(_known_model_or_empty)]
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

    @property
    def tasks(self) -> int:
        """Tasks started on each node (sbatch's --ntasks-per-node)."""
        return self.tasks_per_node


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
    split: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    """hf-parquet: which files of a directory are read (``train`` reads ``train-*.parquet``, ``validation`` …);
    cifar: ``train`` or ``test``."""
    labels: Literal["fine", "coarse"] | None = None
    """cifar, for CIFAR-100: the 100 fine labels (default) or the 20 coarse ones."""
    prefix: str | None = Field(None, pattern=r"^[^/\x00]+(/[^/\x00]+)*$")
    """imagefolder-tar: the folder inside the archive that holds the ``<class>/<file>`` members, e.g.
    ``imagenet21k_train``; empty: the archive's top folder when it has just one, else its root."""

    @property
    def fields(self) -> dict[str, Any]:
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
    seed: int = Field(0, ge=0, lt=2**63)  # numpy and torch take non-negative seeds that fit 64 bits
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
    scratch: OptionalPath = None
    """Where inputs that cannot be read at random (parquet files, compressed tars) are spilled between the shard
    step's two passes, in the permutation's order; empty: ``<output>/.spill``. Needs about the input's size free;
    removed once the shards are written."""
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
    """A run: its name, where it runs, and one optional section per step kind.

    This class holds what every spec has; ``jobs.runspec.spec_model`` adds a section for each step kind in the
    registry (``jobs.steps.registry``), in run order, then ``telemetry``. Specs are always instances of that
    composed model, so ``spec.train`` is the [train] section, or None.
    """

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\n\r/\x00]+$")
    """A name for humans; need not be unique."""
    cluster: ClusterSpec = ClusterSpec()
    """Where and how the steps run."""

    step_names: ClassVar[tuple[str, ...]] = ()
    """The step kinds this model has sections for, in run order (set by ``jobs.runspec.spec_model``)."""

    @property
    def steps(self) -> list[str]:
        """The steps this spec runs, in run order: those whose section is given."""
        return [name for name in self.step_names if self.section(name) is not None]

    def section(self, step: str) -> Any:
        """The section of ``step`` (a pydantic model of the step's own), or None when the spec leaves it out."""
        return getattr(self, step, None)


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    return [f"{key}: {text}" if key else text for key, text in error_items(exc, model)]


def error_items(exc: ValidationError, model: type[BaseModel]) -> list[tuple[str, str]]:
    """(key path, problem) per error of validating ``model``; a check across sections gives the key it names,
    or ``""``."""
    items = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        if err["type"] == "extra_forbidden":
            hint = _closest_key(model, loc)
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


def _closest_key(model: Any, loc: list[str]) -> str | None:
    """The valid key nearest to a misspelt one, as a full key path."""
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
