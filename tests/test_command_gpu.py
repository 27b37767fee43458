"""GPU records of a [script] task, taken from the step's own process by NVML alone: the GPU the command's local
rank uses, and the memory the task's own processes hold on it. NVML is the only part faked (no GPU here)."""

from __future__ import annotations

import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.telemetry.sampler import Sampler
from tests.test_telemetry import jsonl

GB = 2**30


class FourGpuNvml(types.ModuleType):
    """NVML of a node with four 80 GB GPUs; GPU 3 runs the test's child process (5 GB) and a stranger's (7 GB)."""

    class NVMLError(Exception):
        pass

    def __init__(self, child: int) -> None:
        super().__init__("pynvml")
        self.child = child
        self.asked: list[int] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 4

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.asked.append(index)
        return f"gpu-{index}"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return types.SimpleNamespace(used=12 * GB if handle == "gpu-3" else 0, total=80 * GB)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return types.SimpleNamespace(gpu=91, memory=40)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        if handle != "gpu-3":
            return []
        return [
            types.SimpleNamespace(pid=self.child, usedGpuMemory=5 * GB),
            types.SimpleNamespace(pid=1, usedGpuMemory=7 * GB),
        ]


def test_a_command_gpu_record_counts_the_tasks_own_processes_on_its_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        nvml = FourGpuNvml(child.pid)
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # SLURM's choice for this job: local rank 1 has GPU 3
        out = tmp_path / "t.jsonl"
        sampler = Sampler(MetricsWriter(out, rank=1), Pipeline(), interval=0.05, node_wide=False)
        sampler.watch_command_gpu(local_rank=1)
        deadline = time.monotonic() + 60
        with sampler:
            while sampler.samples < 2:
                assert time.monotonic() < deadline, "the sampler stopped sampling"
                time.sleep(0.01)
    finally:
        child.communicate(b"")
    gpus = [r for r in jsonl(out) if r["kind"] == "gpu"]
    assert nvml.asked == [3] and len(gpus) >= 2
    g = gpus[-1]
    assert (g["gpu"], g["allocated_mb"], g["peak_mb"], g["used_mb"], g["total_mb"], g["util_pct"]) == (
        1, 5 * GB / 1e6, 5 * GB / 1e6, 12 * GB / 1e6, 80 * GB / 1e6, 91
    )  # fmt: skip


def test_without_nvml_a_command_has_no_gpu_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = FourGpuNvml(0)

    def no_driver() -> None:
        raise FourGpuNvml.NVMLError("NVML Shared Library Not Found")

    broken.nvmlInit = no_driver  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    sampler = Sampler(MetricsWriter(tmp_path / "t.jsonl", rank=0), None, interval=0.05, node_wide=False)
    sampler.watch_command_gpu(local_rank=0)
    assert sampler.gpu is None


def test_the_script_steps_process_never_loads_torch() -> None:
    """torch in the step's process would hold a CUDA context of its own on the command's GPU."""
    probe = (
        "import sys, clusterdeck.jobs.payloads, clusterdeck.jobs.script.run, clusterdeck.jobs.telemetry.command_gpu;"
        "print([m for m in ('torch', 'torchvision', 'webdataset') if m in sys.modules])"
    )
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"
