"""clusterdeck's public API: what a user's own training script (a ``[script]`` step) imports.

    import clusterdeck

    task = clusterdeck.task()                      # rank, world size, paths: this task's place in the job
    loader = clusterdeck.ShardLoader(batch_size=64, image_size=224)   # the built-in trainer's loader
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, labels in loader:
            ...
            clusterdeck.log(step=step, epoch=epoch + i / len(loader), loss=loss.item(), lr=lr)
            if task.stop_requested():              # the time limit is near, or the job was preempted
                if task.rank == 0:
                    clusterdeck.save_checkpoint({"model": model.state_dict(), "loader": loader.state_dict()}, "last.pt")
                raise SystemExit(clusterdeck.REQUEUE)
        clusterdeck.log_epoch(epoch=epoch + 1, top1=top1, train_loss=train_loss)

``clusterdeck.lightning.ShardDataModule`` is the same loader as a Lightning DataModule (``pip install
clusterdeck[lightning]``).

Importing this package is cheap: the CLI and the app import it on their way to ``clusterdeck.app``, on a login
node, so nothing is imported here; each name loads its module on first use (``ShardLoader`` loads torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clusterdeck.checkpoints import load_checkpoint, save_checkpoint
    from clusterdeck.loader import ShardLoader
    from clusterdeck.metrics import log, log_epoch
    from clusterdeck.taskview import REQUEUE, Task, task

_HOME = {
    "REQUEUE": "taskview",
    "ShardLoader": "loader",
    "Task": "taskview",
    "load_checkpoint": "checkpoints",
    "log": "metrics",
    "log_epoch": "metrics",
    "save_checkpoint": "checkpoints",
    "task": "taskview",
}

__all__ = [
    "REQUEUE",
    "ShardLoader",
    "Task",
    "load_checkpoint",
    "log",
    "log_epoch",
    "save_checkpoint",
    "task",
]


def __getattr__(name: str) -> Any:
    # torch (and torchvision) load only when a script asks for the loader, never for the CLI's sake
    if name == "ShardLoader":
        from clusterdeck.jobs.extras import TRAIN, missing

        if missing(TRAIN):
            raise ImportError("clusterdeck.ShardLoader needs torch and torchvision: pip install 'clusterdeck[train]'")
    if name in _HOME:
        value = getattr(importlib.import_module(f"clusterdeck.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clusterdeck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
