"""Checkpoints: ``last`` and ``best``, each written to a temporary file, flushed, then renamed over the old one.

A job killed while writing leaves the previous ``last`` intact: readers only ever see a
complete file. Checkpoints load on any device (``map_location``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "clusterdeck-checkpoint/1"


def save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint of ours (``FORMAT``); a clear error for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not is_checkpoint(state):
        raise CheckpointError(f"{path}: not a clusterdeck checkpoint")
    return state


def is_checkpoint(obj: Any) -> bool:
    """Whether a loaded file is one of our checkpoints (rather than a plain state_dict)."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


class CheckpointError(Exception):
    pass
