"""Bytes and samples the data pipeline read, summed over the job's processes without a lock per sample.

Shards are read in loader or pool worker processes, not where the sampler thread runs. Each
process adds to its own slot of a shared array (one writer per slot, so no lock per sample);
the sampler sums the slots. A process claims its slot once, on its first ``add``. The object
reaches workers by fork, or by pickling while they are spawned, as multiprocessing allows.

A ``[script]`` task is no fork of the job process: it is the user's command, exec'd. For it the
counters live in a named shared-memory segment (``Pipeline.shared()``, whose ``name`` the step
passes in ``CLUSTERDECK_PIPELINE``), which the task's loader attaches to (``Pipeline.attach``);
its loader workers get it by fork, or re-attach by name when spawned. Slots are claimed under a
POSIX record lock on the segment's file (held per process, so forked workers exclude each other).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import sys
import time
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

try:
    import fcntl
except ImportError:  # not on POSIX: slots are claimed without a lock, at worst two processes share one
    fcntl = None  # type: ignore[assignment]


class Pipeline:
    SLOTS = 256
    """Processes counted at once; a 257th shares a slot, and at worst loses a few counts."""

    def __init__(self) -> None:
        self._counts: Any = multiprocessing.RawArray(ctypes.c_int64, 2 * self.SLOTS)
        self._claimed: Any = multiprocessing.RawValue(ctypes.c_int64, 1)  # slot 0 is the process that made it
        self._lock: Any = multiprocessing.get_context("spawn").Lock()  # also passes to spawned workers
        self._pid = os.getpid()
        self._slot = 0
        self._memory: SharedMemory | None = None
        self.name = ""
        """The shared-memory segment's name, which ``attach`` takes; empty for a Pipeline shared by fork only."""

    @classmethod
    def shared(cls) -> Pipeline:
        """A Pipeline that processes not forked from this one attach to by ``name``. Its maker ``unlink``s it at
        the end (the resource tracker removes it should the maker die first)."""
        memory = SharedMemory(create=True, size=8 * (1 + 2 * cls.SLOTS))
        return cls._over(memory)

    @classmethod
    def attach(cls, name: str) -> Pipeline:
        """The Pipeline ``shared()`` made as ``name``; its counts add to the maker's totals."""
        memory = SharedMemory(name=name)
        # Attaching must not make this process the segment's owner: Python < 3.13 registers it with the
        # resource tracker, which would remove it when this process ends, under the maker's feet.
        with contextlib.suppress(Exception):
            resource_tracker.unregister(memory._name, "shared_memory")  # type: ignore[attr-defined]
        pipeline = cls._over(memory)
        pipeline._slot = -1  # not the maker: claim a slot on the first add
        return pipeline

    @classmethod
    def _over(cls, memory: SharedMemory) -> Pipeline:
        pipeline = cls.__new__(cls)
        pipeline._memory, pipeline.name = memory, memory.name
        # By address, not from_buffer: an exported buffer makes the segment's close() (in its __del__) raise.
        # The Pipeline keeps the segment mapped for as long as it lives.
        exported = ctypes.c_char.from_buffer(memory.buf)
        address = ctypes.addressof(exported)
        del exported
        pipeline._claimed = ctypes.c_int64.from_address(address)
        pipeline._counts = (ctypes.c_int64 * (2 * cls.SLOTS)).from_address(address + 8)
        if pipeline._claimed.value == 0:  # a new segment is zeroed: slot 0 is its maker's
            pipeline._claimed.value = 1
        pipeline._lock = _SegmentLock(memory.name)
        pipeline._pid, pipeline._slot = os.getpid(), 0
        return pipeline

    def add(self, nbytes: int, samples: int = 1) -> None:
        if os.getpid() != self._pid or self._slot < 0:
            self._claim()
        i = 2 * self._slot
        self._counts[i] += nbytes
        self._counts[i + 1] += samples

    def _claim(self) -> None:
        # A timeout, not a wait: a worker killed while holding the lock must not stop the others reading.
        got = self._lock.acquire(timeout=1.0)
        try:
            claimed = self._claimed.value
            self._claimed.value = claimed + 1
        finally:
            if got:
                self._lock.release()
        self._slot = 1 + (claimed - 1) % (self.SLOTS - 1)
        self._pid = os.getpid()

    def totals(self) -> tuple[int, int]:
        """(bytes, samples) read so far by every process; only grows."""
        counts = self._counts[:]
        return sum(counts[0::2]), sum(counts[1::2])

    def unlink(self) -> None:
        """Removes a ``shared()`` segment's name (its maker's job, once the task is done); attached processes
        keep their mapping until they end."""
        if self._memory is not None:
            self._memory.unlink()

    def __getstate__(self) -> dict[str, Any]:
        if self.name:  # a spawned worker attaches by name: a mapping does not pickle
            return {"name": self.name}
        return self.__dict__.copy()  # RawArray and the lock: picklable only while spawning a process

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "name" in state and len(state) == 1:
            try:
                self.__dict__.update(Pipeline.attach(state["name"]).__dict__)
            except OSError:  # the segment is gone (its maker ended): count into a private one, seen by nobody
                self.__dict__.update(Pipeline().__dict__)
        else:
            self.__dict__.update(state)


class _SegmentLock:
    """A lock on a named segment across unrelated processes: a POSIX record lock on its file in /dev/shm."""

    def __init__(self, name: str) -> None:
        self.path = f"/dev/shm/{name}"
        self.fd = -1

    def acquire(self, timeout: float) -> bool:
        if fcntl is None or not sys.platform.startswith("linux"):
            return False
        try:
            self.fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    return False
                time.sleep(0.001)

    def release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
