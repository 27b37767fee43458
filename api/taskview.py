"""``clusterdeck.task()``: this process's place in the job, and whether the job was asked to stop.

The values come from the environment the ``[script]`` step gives each task (``jobs.taskenv``, the one contract
between the two sides). The same script run by hand is one local task: rank 0 of 1, checkpoints under
``./checkpoints``.

SLURM sends SIGUSR2 shortly before the time limit (submitit asks for it) and SIGTERM on preemption or scancel.
Acting inside a signal handler would checkpoint a half-applied optimizer step, so the handlers only set a flag
that the training loop reads at a safe point (``Task.stop_requested``), as the built-in trainer does.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterdeck.jobs import taskenv

REQUEUE: int = taskenv.REQUEUE
"""Exit with this code once the checkpoint is saved to ask for a requeue (75, EX_TEMPFAIL of sysexits.h)."""

DEFAULT_CHECKPOINT_DIR = "checkpoints"
"""Outside a job, where ``save_checkpoint`` writes (relative to the working directory it was started in)."""

_STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
_stopped: list[str] = []
"""The signals that arrived (a list, not a threading.Event: setting an Event takes a lock, which a handler must not)."""
_installed = False
_install_lock = threading.Lock()


@dataclass(frozen=True)
class Task:
    """This process's task. Frozen: the values a job starts a task with do not change while it runs."""

    rank: int
    """0 … world_size - 1 over the whole job; rank 0 writes metrics and, by convention, checkpoints."""
    world_size: int
    local_rank: int
    """The index of this task on its node: the GPU it uses (``cuda:{local_rank}``)."""
    node: int
    run_dir: Path | None
    """The run's directory on the shared filesystem; None outside a job."""
    shards: Path | None
    """The shard set to read: the node's staged copy when the run stages, else the original; None if unset."""
    checkpoint_dir: Path
    attempt: int
    """1 on the first start; each requeue or resume adds one."""
    stop_file: Path | None = field(default=None, repr=False)
    """Where the step notes a stop signal for this task (``jobs.taskenv.STOP_FILE``); None outside a job."""

    def stop_requested(self) -> bool:
        """True once SIGUSR2 (the time limit is near) or SIGTERM (preemption, scancel) arrived: save the
        checkpoint and exit with ``REQUEUE``. In a [script] step a signal that came before the first ``task()``
        call is seen too (the step notes it in the stop file); run by hand, only those after it."""
        if _stopped:
            return True
        return self.stop_file is not None and self.stop_file.exists()


def task() -> Task:
    """This process's task, read from the environment (each call reads it afresh).

    The first call from the main thread installs the SIGUSR2 and SIGTERM handlers ``stop_requested`` reads
    (Python runs signal handlers only in the main thread, and only it may install them).
    """
    if threading.current_thread() is threading.main_thread():
        _install_handlers()
    return read_task()


def read_task() -> Task:
    """This process's task, without touching signal handlers: what the loader and checkpoints use, so that only
    a script that asks for ``task()`` (and so can poll ``stop_requested``) stops dying of SIGTERM."""
    env = taskenv.read_task_env()
    checkpoints = env.checkpoint_dir or Path(DEFAULT_CHECKPOINT_DIR)
    return Task(
        rank=env.rank,
        world_size=env.world_size,
        local_rank=env.local_rank,
        node=env.node,
        run_dir=env.run_dir,
        shards=env.shards,
        checkpoint_dir=checkpoints.absolute(),
        attempt=env.attempt,
        stop_file=env.stop_file,
    )


def _install_handlers() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        for sig in _STOP_SIGNALS:
            signal.signal(sig, _on_stop_signal)
        _installed = True


def _on_stop_signal(signum: int, _: Any) -> None:
    _stopped.append(signal.Signals(signum).name)
    # os.write, not print: a handler that interrupts a print must not write into print's buffer
    with suppress(OSError):
        os.write(2, f"[clusterdeck] {_stopped[-1]} received: task().stop_requested() is now true\n".encode())
