"""One GPU per rank: a check, after each rank chose its device, that no two ranks of a node chose the same one.

A rank picks ``local_rank % device_count()`` of the GPUs it sees. Under some sites' defaults
(``--gpu-bind=closest`` with cyclic task placement, a CUDA_VISIBLE_DEVICES set per task) two
ranks of a node see the same GPUs and pick the same one: both train, each at half speed, and
memory runs out later with a misleading error. The GPU's UUID (not its index, which is relative
to what each task sees) and the host tell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from clusterdeck.jobs.errors import UserError

if TYPE_CHECKING:
    import torch

Place = tuple[str, str]
"""(hostname, GPU UUID) of one rank."""


def shared_gpu(places: list[Place]) -> UserError | None:
    """The error for the first two ranks (by rank) that hold one GPU of one host; None when each has its own."""
    first: dict[Place, int] = {}
    for rank, place in enumerate(places):
        if place in first:
            host, gpu = place
            return UserError(
                f"ranks {first[place]} and {rank} both run on GPU {gpu} of {host}: each rank needs a GPU of its own. "
                "The GPUs each task sees come from the cluster's --gpu-bind and CUDA_VISIBLE_DEVICES; ask for "
                "one task per GPU with no binding that gives two tasks the same GPUs (e.g. extra_sbatch = "
                '["--gpu-bind=none"])'
            )
        first[place] = rank
    return None


def gpu_uuid(device: torch.device) -> str:
    """The UUID of the CUDA device ``device``: the same on every process, whatever it sees as its index."""
    import torch

    return str(torch.cuda.get_device_properties(device).uuid)


def check_one_gpu_each(
    gather: Callable[[Place], list[Place]], host: str, device: torch.device, uuid: Callable[..., str] = gpu_uuid
) -> None:
    """Gathers every rank's (host, GPU) with ``gather`` (all ranks call it) and raises ``shared_gpu``'s error."""
    error = shared_gpu(gather((host, uuid(device))))
    if error is not None:
        raise error
