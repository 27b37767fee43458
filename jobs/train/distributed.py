"""One process per GPU (or per CPU task): torch.distributed set up from the job's environment.

Under SLURM, submitit knows the ranks and the master node; ``TorchDistributedEnvironment``
exports MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and LOCAL_RANK from it. One process on
its own (the local executor, a test) needs no process group at all.

When a rank fails, its peers are in a collective waiting for it (DDP's all-reduce). A graceful
``destroy_process_group`` waits for them too (NCCL), so the job would sit until the group's
timeout and srun's kill, with no status and no error written. ``process_group`` has the failing
rank say why first, then abort the group: its peers' collectives fail at once.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from clusterdeck.jobs.errors import RequeueJob
from clusterdeck.jobs.train.placement import check_one_gpu_each
from clusterdeck.jobs.train.timeouts import COLLECTIVE_TIMEOUT_S
from clusterdeck.jobs.world import job_world

Failed = Callable[[BaseException], None]
"""Records a rank's failure (its status and error line: ``jobs.payloads``) before the rank leaves the group."""


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    nodes: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def max(self, values: list[float]) -> list[float]:
        """Element-wise maximum over ranks: how all ranks agree to checkpoint or stop at the same step."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere: each rank's last forward updated its own."""
        if self.world > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leaves the process group with its peers: every rank got here (the job ended or requeues)."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def abort(self) -> None:
        """Leaves the process group now, not waiting for peers: those blocked in a collective with this rank fail
        at once instead of at the group's timeout. Never raises: it runs while another error is on its way out."""
        if self.world > 1 and dist.is_initialized():
            with suppress(Exception):
                abort_group()


def abort_group() -> None:
    """Aborts the default process group: ``_abort_process_group`` where torch has it, else the group's own
    ``abort``; without either, the group is left as it is and ends with the process, still without the wait
    of a graceful destroy."""
    c10d = dist.distributed_c10d
    if hasattr(c10d, "_abort_process_group"):
        c10d._abort_process_group()
    elif hasattr(dist.group.WORLD, "abort"):
        dist.group.WORLD.abort()


@contextmanager
def process_group(failed: Failed | None = None) -> Iterator[Dist]:
    """This task's place in the job, its process group set up, and left as ``leaving`` says."""
    with leaving(setup(), failed) as d:
        yield d


@contextmanager
def leaving(d: Dist, failed: Failed | None = None) -> Iterator[Dist]:
    """On the way out, closes the group with the peers (a requeue too: every rank stops at the same step), or,
    when this rank failed, has ``failed`` record why and then aborts the group, in that order: once this rank
    leaves, its peers fail too and srun ends the job (``--kill-on-bad-exit``), so a rank that left first might
    never get its word into the run."""
    try:
        yield d
    except RequeueJob:
        d.close()
        raise
    except BaseException as exc:
        if d.world > 1:
            try:
                if failed is not None and not isinstance(exc, SystemExit):  # an exit is no failure to record
                    with suppress(Exception):  # the caller records it again on the way out (``jobs.payloads``)
                        failed(exc)
            finally:
                d.abort()
        raise
    else:
        d.close()


def setup() -> Dist:
    place = job_world()
    if place.world == 1:
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        return Dist(0, 1, 0, device)
    import submitit.helpers

    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    if torch.cuda.is_available():
        device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    d = Dist(env.rank, env.world_size, env.local_rank, device, place.nodes)
    if device.type == "cuda":
        try:
            check_one_gpu_each(d.gather, socket.gethostname(), device)
        except BaseException:
            d.close()  # every rank gathered the same list, so every rank fails here: nobody waits
            raise
    return d
