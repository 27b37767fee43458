"""Checkpoints: ``last`` and ``best``, each written to a temporary file, flushed, then renamed over the old one
(``jobs.atomic``, which also gives them the umask's mode, as every file of a run).

A job killed while writing leaves the previous ``last`` intact: readers only ever see a
complete file. Checkpoints load on any device (``map_location``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clusterdeck.jobs import atomic

FORMAT = "clusterdeck-checkpoint/1"


def save(path: Path, state: dict[str, Any]) -> None:
    with atomic.replacing(path) as f:  # group-readable under the umask, synced, renamed, directory synced
        torch.save({"format": FORMAT, **state}, f)


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
