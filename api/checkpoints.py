"""``clusterdeck.save_checkpoint`` / ``load_checkpoint``: a script's checkpoints, written as the run's own are.

Each is written to a temporary file beside the target, synced and renamed over it (``jobs.atomic``): a job
killed while saving, by the time limit it was saving for, leaves the previous checkpoint whole. Files get the
mode a plain ``open()`` gives under the umask, so teammates can read them as they read the run's other files.
They go to ``task().checkpoint_dir``, which the step keeps across requeues and resumes of the run.

Every rank may call these; which one saves is the caller's choice: with DDP the ranks hold the same weights, so
let rank 0 save (``if clusterdeck.task().rank == 0``) and every rank load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clusterdeck.jobs import atomic
from clusterdeck.taskview import read_task


def checkpoint_path(name: str) -> Path:
    """Where checkpoint ``name`` lives; ``name`` is a plain file name, never a path out of the directory."""
    if not isinstance(name, str):
        raise TypeError(f"name: {name!r} is a {type(name).__name__}, not a file name")
    if not name or name in (".", "..") or "/" in name or (os.altsep and os.altsep in name) or "\0" in name:
        raise ValueError(f"name: {name!r} is not a plain file name (no '/', not '.' or '..'), e.g. 'last.pt'")
    return read_task().checkpoint_dir / name


def save_checkpoint(obj: Any, name: str) -> Path:
    """Saves ``obj`` (anything ``torch.save`` takes: state dicts, tensors, numbers) as ``name``; returns its path."""
    import torch  # here, not at the top: `import clusterdeck` stays free of torch

    path = checkpoint_path(name)
    with atomic.replacing(path) as f:  # temporary file, fsync, rename, directory fsync; mode from the umask
        torch.save(obj, f)
    return path


def load_checkpoint(name: str, *, map_location: Any = "cpu", weights_only: bool = True) -> Any:
    """What ``save_checkpoint`` saved as ``name``, or None when there is none yet (the first attempt).

    ``weights_only`` (torch's default) unpickles tensors, containers and plain values but never code; pass
    False for a checkpoint holding other objects, from a source you trust.
    """
    path = checkpoint_path(name)
    if not path.exists():
        return None
    import torch

    return torch.load(path, map_location=map_location, weights_only=weights_only)
