"""A [script] task's GPU, seen from the step's own process: NVML only.

The step runs the user's command and does not load torch: that would put a CUDA context of its own (hundreds of
MB) on the GPU the command trains on. So the device is found as the command will find it: its
``CUDA_VISIBLE_DEVICES`` entry at the task's local rank (an index or a UUID; every GPU when unset), and
``allocated_mb`` is what the task's processes hold on it by NVML's per-process accounting; ``peak_mb`` is the
most seen so far. ``reserved_mb`` (torch's cache) cannot be seen from outside and is left at 0. Where NVML
cannot see the processes (another PID namespace), ``allocated_mb`` is 0 and ``used_mb`` (the whole device) still
tells the story.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from clusterdeck.jobs.telemetry.gpu import MB, nvml_handle


class CommandGpuProbe:
    def __init__(self, index: int, nvml: Any, handle: Any, pids: Callable[[], set[int]]) -> None:
        self.index, self.nvml, self.handle, self.pids = index, nvml, handle, pids
        self.peak_mb = 0.0

    @classmethod
    def open(cls, local_rank: int, pids: Callable[[], set[int]]) -> CommandGpuProbe | None:
        """The probe of the GPU task ``local_rank`` uses, or None without NVML or GPUs (said once, in the log)."""
        try:
            import pynvml

            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is None:
                entries = [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
            else:
                entries = [e.strip() for e in visible.split(",") if e.strip()]
            if not entries:
                return None
            index = local_rank % len(entries)
            entry = entries[index]
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(entry)) if entry.isdigit() else nvml_handle(pynvml, entry)
        except Exception as exc:
            print(f"[clusterdeck] telemetry: no GPU records for the command ({exc})", file=sys.stderr, flush=True)
            return None
        return cls(index, pynvml, handle, pids)

    def sample(self) -> dict[str, Any]:
        memory = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        mine = self.pids()
        held = sum(p.usedGpuMemory or 0 for p in self._processes() if p.pid in mine) / MB
        self.peak_mb = max(self.peak_mb, held)
        record: dict[str, Any] = {
            "gpu": self.index,
            "allocated_mb": held,
            "peak_mb": self.peak_mb,
            "used_mb": memory.used / MB,
            "total_mb": memory.total / MB,
        }
        with suppress(self.nvml.NVMLError):  # a MIG slice has none to give
            record["util_pct"] = float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        return record

    def _processes(self) -> list[Any]:
        try:
            return list(self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))
        except self.nvml.NVMLError:
            return []
