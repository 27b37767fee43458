"""Signals a checkpointing job listens for, turned into flags its loop reads at a safe point.

SLURM sends USR2 ``signal_delay_s`` before the time limit (submitit asks for it), and SIGTERM
on scancel or preemption. Acting inside a handler would checkpoint a half-applied optimizer
step, so the handlers only set flags. They are installed before torch is imported: a signal
that arrives while the job is still starting is kept, not lost.

A job with nothing to checkpoint (an export) instead turns SIGTERM and SIGHUP into
KeyboardInterrupt (``interrupted_by_termination``), so that its cleanup runs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any


@dataclass
class Signals:
    stop: str = ""
    """The name of the signal that asks the job to checkpoint and stop (requeue), or empty."""
    checkpoint: bool = False
    """A checkpoint is asked for; the job goes on."""
    previous_usr2: Any = None
    """The handler ours replaced (submitit's): it requeues the job once the checkpoint is saved."""


@contextmanager
def signal_flags() -> Iterator[Signals]:
    flags = Signals()

    def stop(signum: int, _: Any) -> None:
        flags.stop = signal.Signals(signum).name
        # the log says when the signal arrived, not only when the loop acted on it (a step or a shard later);
        # os.write, not print: a handler that interrupts a print must not write into its buffer
        with suppress(OSError):
            os.write(2, f"[clusterdeck] {flags.stop} received: stopping at the next step\n".encode())

    def save(_: int, __: Any) -> None:
        flags.checkpoint = True

    flags.previous_usr2 = signal.signal(signal.SIGUSR2, stop)
    previous_term = signal.signal(signal.SIGTERM, save)
    try:
        yield flags
    finally:
        signal.signal(signal.SIGUSR2, flags.previous_usr2)
        signal.signal(signal.SIGTERM, previous_term)


def worker_signals(*_: Any) -> None:
    """For processes a job forks (writer pools, loader workers): they inherit the job's handlers.

    submitit's handler ignores SIGTERM, so a pool's ``terminate()`` would never end such a
    worker and the job would hang at the pool's exit. Workers end on SIGTERM, as by default,
    and leave USR2 (the time-limit warning) to the job's main process.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


@contextmanager
def interrupted_by_termination() -> Iterator[None]:
    """SIGTERM (scancel, kill) and SIGHUP (a closed SSH session) raise KeyboardInterrupt, as Ctrl-C does, so that
    the writer's cleanup runs: its temporary files, GBs of them, are removed and its workers stopped."""
    signals = (signal.SIGTERM, signal.SIGHUP)

    def interrupt(signum: int, frame: object) -> None:
        for sig in signals:  # a second one would interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: not set from Python


def requeue_with(previous: Any, *, main: bool) -> Callable[[], None]:
    """The requeue a ``RequeueJob`` carries: ``previous`` is submitit's USR2 handler (``Signals.previous_usr2``),
    which, on rank 0, checkpoints the call, runs ``scontrol requeue`` and exits; the other ranks wait for that."""

    def requeue() -> None:
        if not callable(previous):
            raise RuntimeError("no scheduler to requeue with here; continue with: clusterdeck resume RUN")
        previous(signal.SIGUSR2, None)
        if not main:
            time.sleep(120)  # the requeue on rank 0 ends this task; leave if it never comes
            sys.exit(1)

    return requeue
