"""Bytes and samples the data pipeline read, summed over the job's processes without a lock per sample.

Shards are read in loader or pool worker processes, not where the sampler thread runs. Each
process adds to its own slot of a shared array (one writer per slot, so no lock per sample);
the sampler sums the slots. A process claims its slot once, on its first ``add``. The object
reaches workers by fork, or by pickling while they are spawned, as multiprocessing allows.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os


class Pipeline:
    SLOTS = 256
    """Processes counted at once; a 257th shares a slot, and at worst loses a few counts."""

    def __init__(self) -> None:
        self._counts = multiprocessing.RawArray(ctypes.c_int64, 2 * self.SLOTS)
        self._claimed = multiprocessing.RawValue(ctypes.c_int64, 1)  # slot 0 is the process that made it
        self._lock = multiprocessing.get_context("spawn").Lock()  # a spawn-context lock also passes to spawned workers
        self._pid = os.getpid()
        self._slot = 0

    def add(self, nbytes: int, samples: int = 1) -> None:
        if os.getpid() != self._pid:
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
