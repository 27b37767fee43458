"""One rank's GPU as the sampler sees it: NVML's memory and utilisation, and torch's allocator.

NVML (nvidia-ml-py) reports the whole device, whatever process uses it; the allocator reports
what this rank's tensors hold and how much the caching allocator reserved. The NVML device is
found by the UUID torch reports, so ``CUDA_VISIBLE_DEVICES`` renumbering cannot mix GPUs up.
Without CUDA there is no probe, and no ``gpu`` record: absent, never zero.

A MIG slice is a CUDA device of its own: torch reports the slice's UUID, which NVML names
``MIG-<uuid>`` (a whole GPU is ``GPU-<uuid>``). Drivers before R470 find MIG slices by UUID
only through the parent GPU, so when the direct lookup fails the probe walks every GPU and its
MIG slices and compares UUIDs. NVML gives a slice's memory but no utilisation (Not Supported):
its records carry memory, and ``util_pct`` is left out.
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
        self.utilisation = True
        """False once NVML said the device has none to give (a MIG slice)."""

    @classmethod
    def open(cls, index: int) -> GpuProbe | None:
        """A probe of CUDA device ``index`` of this process, or None when CUDA is not there."""
        import torch

        if not torch.cuda.is_available():
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
            return cls(index, pynvml, nvml_handle(pynvml, str(torch.cuda.get_device_properties(index).uuid)))
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
                if self.utilisation:
                    record.update(self._utilisation())
            except Exception as exc:  # a GPU fallen off the bus says so once; the job goes on
                print(
                    f"[clusterdeck] telemetry: NVML failed ({exc}); GPU records carry torch's figures only",
                    file=sys.stderr,
                    flush=True,
                )
                self.handle = None
        return record

    def _utilisation(self) -> dict[str, float]:
        try:
            return {"util_pct": float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)}
        except self.nvml.NVMLError as exc:
            if getattr(exc, "value", None) != getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", 3):
                raise
            self.utilisation = False  # a MIG slice: memory only, from now on
            return {}


def nvml_handle(nvml: Any, uuid: str) -> Any:
    """The NVML handle of the CUDA device whose UUID torch reports as ``uuid`` (bare, or already prefixed)."""
    bare = uuid.removeprefix("GPU-").removeprefix("MIG-")
    for name in (f"GPU-{bare}", f"MIG-{bare}"):
        try:
            return nvml.nvmlDeviceGetHandleByUUID(name)
        except nvml.NVMLError:
            pass
    for gpu in range(nvml.nvmlDeviceGetCount()):  # a driver whose lookup by UUID does not know MIG slices
        handle = nvml.nvmlDeviceGetHandleByIndex(gpu)
        for candidate in (handle, *_mig_slices(nvml, handle)):
            if _text(nvml.nvmlDeviceGetUUID(candidate)).removeprefix("GPU-").removeprefix("MIG-") == bare:
                return candidate
    raise LookupError(f"no NVML device has UUID {bare}")


def _mig_slices(nvml: Any, gpu: Any) -> list[Any]:
    """The MIG devices of ``gpu`` that exist (none where MIG is off or not supported)."""
    try:
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(gpu)
    except nvml.NVMLError:
        return []
    slices = []
    for slot in range(slots):
        try:
            slices.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot))
        except nvml.NVMLError:  # an empty slot
            continue
    return slices


def _text(value: str | bytes) -> str:
    """nvidia-ml-py returns str; older pynvml releases return bytes."""
    return value.decode() if isinstance(value, bytes) else value
