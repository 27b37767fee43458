"""``train.deterministic``: the same weights from a resumed run as from an uninterrupted one, on a GPU too.

The data order and the step a resumed job continues from are exact whatever this says. What
differs on a GPU is the arithmetic: several cuDNN and cuBLAS backward kernels add in an order
that changes from run to run, so two runs over the same batches drift apart in the last bits.
Deterministic kernels fix that at some cost in speed. cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG``
when its first handle is made, so the variable is set here, before the process group and the
device are set up (``jobs.train.distributed.setup``), never after.
"""

from __future__ import annotations

import os

import torch

CUBLAS_WORKSPACE = ":4096:8"
"""The workspace setting cuBLAS needs for reproducible results (CUDA's documented choice; ``:16:8`` uses less
memory and is slower)."""
REPRODUCIBLE_WORKSPACES = (CUBLAS_WORKSPACE, ":16:8")


def apply(deterministic: bool) -> bool:
    """Turns deterministic kernels on when asked (called before CUDA is first used); returns whether it did.

    Off, nothing is touched: the defaults (cuDNN autotuning included) stay as torch sets them."""
    if not deterministic:
        return False
    # before any cuBLAS handle exists; the other reproducible value, if the user exported it, is kept
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in REPRODUCIBLE_WORKSPACES:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return True


def state() -> dict[str, object]:
    """What the process runs with now, for the job log and for checks."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
    }


def describe() -> str:
    """``state()`` as the job log's line: ``deterministic_algorithms=True cudnn_deterministic=True …``."""
    return " ".join(f"{key}={value}" for key, value in state().items())
