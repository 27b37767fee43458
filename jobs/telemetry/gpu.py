"""One rank's GPU as the sampler sees it: NVML's memory and utilisation, and torch's allocator.

NVML (nvidia-ml-py) reports the whole device, whatever process uses it; the allocator reports
what this rank's tensors hold and how much the caching allocator reserved. The NVML device is
found by the UUID torch reports, so ``CUDA_VISIBLE_DEVICES`` renumbering cannot mix GPUs up.
Without CUDA there is no probe, and no ``gpu`` record: absent, never zero.
"""

from __future__ import annotations

import sys
from typing import Any

MB = 1e6


class GpuProbe:
    def __init__(self, index: int, nvml: Any = None, handle: Any = None) -> None:
        self.index = index
        self.nvml = nvml
        self.handle = handle

    @classmethod
    def open(cls, index: int) -> GpuProbe | None:
        """A probe of CUDA device ``index`` of this process, or None when CUDA is not there."""
        import torch

        if not torch.cuda.is_available():
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
            return cls(index, pynvml, pynvml.nvmlDeviceGetHandleByUUID(uuid))
        except Exception as exc:  # no driver library, an old driver: the allocator's figures are still worth having
            print(
                f"[clusterdeck] telemetry: NVML unavailable ({exc}); GPU records carry torch's figures only",
                file=sys.stderr,
                flush=True,
            )
            return cls(index)

    def sample(self) -> dict[str, Any]:
        import torch

        record: dict[str, Any] = {
            "gpu": self.index,
            "allocated_mb": torch.cuda.memory_allocated(self.index) / MB,
            "reserved_mb": torch.cuda.memory_reserved(self.index) / MB,
            "peak_mb": torch.cuda.max_memory_allocated(self.index) / MB,
        }
        if self.handle is not None:
            try:
                memory = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
                record["used_mb"] = memory.used / MB
                record["total_mb"] = memory.total / MB
                record["util_pct"] = float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            except Exception as exc:  # a GPU fallen off the bus says so once; the job goes on
                print(
                    f"[clusterdeck] telemetry: NVML failed ({exc}); GPU records carry torch's figures only",
                    file=sys.stderr,
                    flush=True,
                )
                self.handle = None
        return record
