"""The [script] section: a user's own command, run once per task with the shards staged (``jobs.steps.script``)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StrictStr, ValidationInfo, field_validator

from clusterdeck.jobs.spec import OptionalPath, RunSpec, Section, expand_vars
from clusterdeck.jobs.steps.train_spec import StageSpec, TrainResources

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)
"""Variables the step sets for every task (``jobs.taskenv``), beside every ``CLUSTERDECK_*`` one."""


def _workdir(value: object) -> object:
    """Empty is where submit ran; a relative path is taken from there too, so the job gets an absolute one."""
    if value in ("", None):
        return Path.cwd()
    value = expand_vars(value)
    return Path.cwd() / value if isinstance(value, str) and not os.path.isabs(value) else value


def _a_directory(path: Path, info: ValidationInfo) -> Path:
    if (info.context or {}).get("check_paths", True) and not path.is_dir():
        raise ValueError(f"{path} is not a directory" if path.exists() else f"path does not exist: {path}")
    return path


Workdir = Annotated[Path, BeforeValidator(_workdir), AfterValidator(_a_directory)]


class ScriptResources(TrainResources):
    """As [train.resources]: one task per GPU, ``tasks_per_node`` tasks without GPUs."""


class ScriptSpec(Section):
    command: list[StrictStr] = Field(min_length=1)
    """The command every task runs, as a list: ["python", "train.py", "--epochs", "30"] (srun starts one per task)."""
    workdir: Workdir = Field("", validate_default=True)  # type: ignore[assignment]
    """The working directory of every task; empty is the directory clusterdeck submit ran in."""
    shards: OptionalPath = None
    """A shard set directory (with index.json) the script reads; empty uses this run's [shard] output, or none."""
    env: dict[str, StrictStr] = Field(default_factory=dict)
    """More environment variables for every task, e.g. { WANDB_MODE = "offline" }."""
    max_requeues: int = Field(3, ge=0)
    """Times a task that exits with clusterdeck.REQUEUE (after saving its checkpoint) is requeued before the run
    fails; the time-limit warning (SIGUSR2) and SIGTERM are passed on to the command."""
    stage: StageSpec = StageSpec()
    """Copying the shards to node-local disk, as for [train]; the command reads the copy ($CLUSTERDECK_SHARDS).
    Scope 'node' stages the shards that clusterdeck.ShardLoader's ranks read with seed 0."""
    resources: ScriptResources = ScriptResources()
    """sbatch resources of the script step."""

    @property
    def seed(self) -> int:
        """The read order stage scope 'node' follows (``jobs.stage.job.read_order``): ShardLoader's default."""
        return 0

    @field_validator("command")
    @classmethod
    def _a_program(cls, command: list[str]) -> list[str]:
        if not command[0].strip():
            raise ValueError("the program (the first item) is empty")
        return command

    @field_validator("env")
    @classmethod
    def _names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name in RESERVED_ENV or name.startswith("CLUSTERDECK_"):
                raise ValueError(f"{name} is set by clusterdeck for every task; leave it out")
        return env


def script_shards(spec: RunSpec) -> Path | None:
    """The shard set the script reads: ``script.shards``, else this run's [shard] output, else none."""
    cfg = spec.section("script")
    assert cfg is not None
    if cfg.shards is not None:
        return Path(cfg.shards)
    shard = spec.section("shard")
    return None if shard is None else Path(shard.output)
