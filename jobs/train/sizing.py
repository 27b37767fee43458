"""How many loader processes a task runs and where it decodes, from the CPUs SLURM gave it (no torch here).

- ``workers = "auto"``: the task's CPUs (its affinity mask, which SLURM's cgroup sets,
  capped by SLURM_CPUS_PER_TASK) minus one for the training process; when the device
  decodes, the workers only read bytes and headers, so at most ``DEVICE_WORKERS``.
- ``decode = "auto"``: on the device (nvJPEG) when the task has a CUDA GPU and fewer than
  ``CPUS_FOR_CPU_DECODE`` CPUs; else in the CPU workers. One core decodes and crops a few
  hundred ImageNet images a second; one GPU trains ResNet-50 at thousands.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

CPUS_FOR_CPU_DECODE = 8
DEVICE_WORKERS = 4

Decoder = Literal["cpu", "device", "pil"]


@dataclass(frozen=True)
class LoaderSize:
    decoder: Decoder
    workers: int
    cpus: int


def task_cpus() -> int:
    """The CPUs this process may run on: its affinity (SLURM's cgroup/cpuset), capped by SLURM_CPUS_PER_TASK."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS: no mask
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(1, cpus)


def size_loader(workers: int | str, decode: str, *, cuda: bool, cpus: int | None = None) -> LoaderSize:
    """The ``workers`` and ``decode`` settings of [train] or [evaluate], resolved for this task."""
    cpus = task_cpus() if cpus is None else cpus
    decoder: Decoder
    if decode == "auto":
        decoder = "device" if cuda and cpus < CPUS_FOR_CPU_DECODE else "cpu"
    elif decode in ("cpu", "device", "pil"):
        decoder = decode  # type: ignore[assignment]
    else:
        raise ValueError(f"decode: unknown decoder {decode!r}")
    if workers != "auto":
        return LoaderSize(decoder, int(workers), cpus)
    auto = max(1, cpus - 1)
    return LoaderSize(decoder, min(auto, DEVICE_WORKERS) if decoder == "device" else auto, cpus)
