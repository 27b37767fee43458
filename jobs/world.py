"""Where a task sits in its job: rank, node and job id, from SLURM or submitit's local executor."""

from __future__ import annotations

import os
from dataclasses import dataclass

import submitit


@dataclass(frozen=True)
class World:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    nodes: int = 1
    node: int = 0
    job_id: str = ""
    restarts: int = 0
    """How often SLURM requeued this job (SLURM_RESTART_COUNT)."""

    @property
    def tasks_per_node(self) -> int:
        return self.world // self.nodes


def job_world() -> World:
    """This task's place in its job; one task on its own (rank 0 of 1) outside a job."""
    try:
        env = submitit.JobEnvironment()
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", 0))
        return World(env.global_rank, env.num_tasks, env.local_rank, env.num_nodes, env.node, env.job_id, restarts)
    except RuntimeError:
        return World(job_id=str(os.getpid()))
