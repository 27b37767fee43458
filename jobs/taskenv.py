"""The environment a ``[script]`` step gives each task of a user's command, and how the public API reads it back.

One contract between two sides: the script step (``jobs.steps.script``) writes these variables into the
environment of every process it starts, and ``clusterdeck.task()`` (``api/``) reads them in the user's code.
The ``torch.distributed`` names (``RANK`` … ``MASTER_PORT``) are the ones ``init_process_group("env://")``,
torchrun-aware code and Lightning read, so a script needs nothing of clusterdeck to join its process group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REQUEUE = 75
"""The exit code a task uses to ask for a requeue after it saved its checkpoint (EX_TEMPFAIL of sysexits.h)."""

RUN_DIR = "CLUSTERDECK_RUN_DIR"
SHARDS = "CLUSTERDECK_SHARDS"
"""The shard set this task reads: the staged copy as this node sees it, the original when not staged, or empty."""
CHECKPOINT_DIR = "CLUSTERDECK_CHECKPOINT_DIR"
ATTEMPT = "CLUSTERDECK_ATTEMPT"
METRICS = "CLUSTERDECK_METRICS"
"""The metrics file ``clusterdeck.log`` appends to; unset outside a job, where ``log`` writes nothing."""
NODE = "CLUSTERDECK_NODE"
NODES = "CLUSTERDECK_NODES"
STAGING = "CLUSTERDECK_STAGING"
"""When the run stages: the node's staging view. With 'ahead' its shards appear one by one and a reader waits for
each; a shard the node did not stage (scope 'node') is named as such, not as a missing file."""
STOP_FILE = "CLUSTERDECK_STOP_FILE"
"""A file that appears once SIGUSR2 or SIGTERM came for this task: the signal itself may come before the command's
handler is installed (the step starts the command with SIGUSR2 ignored, so that it is not ended by it), and the
file keeps it for ``clusterdeck.task().stop_requested()``."""
SHARD_NODES = "CLUSTERDECK_SHARD_NODES"
"""The ``nodes`` the train shards are first dealt to (``jobs.train.order.rank_shards``): the job's node count under
stage scope 'node', where each node stages only its share, else 1."""
PIPELINE = "CLUSTERDECK_PIPELINE"
"""The name of the shared memory where the task's data-pipeline counters go (``jobs.telemetry.pipeline``)."""


@dataclass(frozen=True)
class TaskEnv:
    """One task's place and paths, as the script step hands them over."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node: int = 0
    nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    run_dir: Path | None = None
    shards: Path | None = None
    checkpoint_dir: Path | None = None
    attempt: int = 1
    metrics: Path | None = None
    staging: Path | None = None
    stop_file: Path | None = None
    shard_nodes: int = 1
    pipeline: str = ""

    def variables(self) -> dict[str, str]:
        """The environment variables that say all of this (empty paths left empty)."""

        def text(path: Path | None) -> str:
            return "" if path is None else str(path)

        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "GROUP_RANK": str(self.node),
            "NODE_RANK": str(self.node),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            RUN_DIR: text(self.run_dir),
            SHARDS: text(self.shards),
            CHECKPOINT_DIR: text(self.checkpoint_dir),
            ATTEMPT: str(self.attempt),
            METRICS: text(self.metrics),
            NODE: str(self.node),
            NODES: str(self.nodes),
            STAGING: text(self.staging),
            STOP_FILE: text(self.stop_file),
            SHARD_NODES: str(self.shard_nodes),
            PIPELINE: self.pipeline,
        }


def read_task_env(env: Mapping[str, str] | None = None) -> TaskEnv:
    """This process's task as the variables say; a single local task where they are unset or not numbers
    (the same script run by hand)."""
    env = os.environ if env is None else env

    def number(name: str, default: int) -> int:
        try:
            return int(env.get(name, ""))
        except ValueError:
            return default

    def path(name: str) -> Path | None:
        value = env.get(name, "")
        return Path(value) if value else None

    world = max(number("WORLD_SIZE", 1), 1)
    return TaskEnv(
        rank=number("RANK", 0),
        world_size=world,
        local_rank=number("LOCAL_RANK", 0),
        local_world_size=max(number("LOCAL_WORLD_SIZE", world), 1),
        node=number(NODE, number("GROUP_RANK", 0)),
        nodes=max(number(NODES, 1), 1),
        master_addr=env.get("MASTER_ADDR", "127.0.0.1") or "127.0.0.1",
        master_port=number("MASTER_PORT", 29500),
        run_dir=path(RUN_DIR),
        shards=path(SHARDS),
        checkpoint_dir=path(CHECKPOINT_DIR),
        attempt=max(number(ATTEMPT, 1), 1),
        metrics=path(METRICS),
        staging=path(STAGING),
        stop_file=path(STOP_FILE),
        shard_nodes=max(number(SHARD_NODES, 1), 1),
        pipeline=env.get(PIPELINE, ""),
    )
