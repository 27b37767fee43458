"""What jobs measure about themselves, and following a real run with ``logs``, ``metrics`` and ``watch``."""

from __future__ import annotations

import fcntl
import itertools
import json
import multiprocessing
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.protocol import unstamped, version
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.telemetry.gpu import MB
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.telemetry.sampler import Sampler
from tests.conftest import REPO, run_cli, train_section

HEADER = re.compile(r"^==> job (\S+) rank (\d+) \((out|err)\) <==$")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "clusterdeck.app.cli", *args]


def run_in_pty(args: list[str], result: dict[str, Any]) -> None:
    """Runs ``args`` on a real terminal of 140×40, as a person would; keeps everything it drew."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"}
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    result["code"] = proc.wait()
    result["screen"] = b"".join(chunks).decode(errors="replace")


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_real_training_run_followed_by_logs_metrics_and_watch(sample_shards: Path, tmp_path: Path, home: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "followed"\n[telemetry]\ninterval_s = 0.2\n' + train_section(sample_shards))
    submitted = run_cli("submit", str(spec), "--json")
    assert submitted.code == 0, submitted.err
    run_id = json.loads(submitted.out)["run_id"]
    pipe = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    logs = subprocess.Popen(cli("logs", run_id, "--follow"), **pipe)  # type: ignore[call-overload]
    metrics = subprocess.Popen(cli("metrics", run_id, "--follow", "--json"), **pipe)  # type: ignore[call-overload]
    lines = subprocess.Popen(cli("watch", run_id), **pipe)  # type: ignore[call-overload]
    screen: dict[str, Any] = {}
    terminal = threading.Thread(target=run_in_pty, args=(cli("watch", run_id), screen))
    terminal.start()
    outputs = {name: p.communicate(timeout=240) for name, p in (("logs", logs), ("metrics", metrics), ("watch", lines))}
    terminal.join(timeout=240)
    for name, p in (("logs", logs), ("metrics", metrics), ("watch", lines)):
        assert p.returncode == 0, (name, outputs[name][1])
    assert screen["code"] == 0, screen["screen"][-2000:]
    paths = RunPaths(home / "runs" / run_id)

    # logs --follow: every line of every log file once, in the file's order
    followed: dict[tuple[str, str], list[str]] = {}
    current: list[str] = []
    for line in outputs["logs"][0].splitlines():
        m = HEADER.match(line)
        if m:
            current = followed.setdefault((m[1], m[2]), [])
        else:
            current.append(line)
    files = sorted(paths.submitit.glob("*_log.out"))
    assert files and len(followed) == len(files)
    for file in files:
        job_id, rank = file.name.removesuffix("_log.out").rsplit("_", 1)
        assert followed[(job_id, rank)] == file.read_text().splitlines()
    assert any(line.startswith("step ") for lines_ in followed.values() for line in lines_)

    # metrics --follow --json: every record of every file once, each file's records in its order
    stamped = [json.loads(line) for line in outputs["metrics"][0].splitlines()]
    assert {(r["schema"], r["clusterdeck"]) for r in stamped} == {("metric-record/1", version())}
    records = [unstamped(r) for r in stamped]
    telemetry = sorted(paths.telemetry_dir.glob("*.jsonl"))
    assert len(telemetry) == 1
    assert [r for r in records if r["kind"] not in ("system", "gpu")] == jsonl(paths.metrics)
    assert [r for r in records if r["kind"] in ("system", "gpu")] == jsonl(telemetry[0])

    # the samples: each covers at least 0.2 s (the last one, taken as the job ends, the part-interval before it),
    # each with time, kind, node and rank; without a GPU, no gpu record at all
    system = [r for r in records if r["kind"] == "system"]
    assert system
    assert bool([r for r in records if r["kind"] == "gpu"]) == torch.cuda.is_available()
    for r in system:
        assert {"time", "node", "rank", "cpu_pct", "rss_mb", "read_mb_s", "data_mb_s", "disk_read_mb_s"} <= r.keys()
    assert all(r["interval_s"] >= 0.199 for r in system[:-1])
    assert all(a["time"] < b["time"] for a, b in itertools.pairwise(system))
    # it trains: the CPU seconds the samples add up to (rate × interval), which load does not change, show it
    cpu_s = sum(r["cpu_pct"] / 100 * r["interval_s"] for r in system)
    assert cpu_s > 1.0
    # the pipeline's counts, summed over the samples, are what the loader workers read (not per process, not zero)
    splits = json.loads((sample_shards / "index.json").read_text())["splits"]
    read_samples = sum(r["data_samples_s"] * r["interval_s"] for r in system)
    read_bytes = sum(r["data_mb_s"] * r["interval_s"] * 1e6 for r in system)
    consumed = 2 * (splits["train"]["samples"] + splits["val"]["samples"])  # two epochs
    assert consumed <= round(read_samples) <= 2 * consumed
    per_sample = splits["train"]["bytes"] / splits["train"]["samples"]
    assert 0.8 * per_sample < read_bytes / read_samples < 1.25 * per_sample

    # watch, plain lines: one per train and epoch record, in order, then the run's end
    watched = outputs["watch"][0].splitlines()
    steps = [int(re.match(r"train step (\d+)[/ ]", line)[1]) for line in watched if line.startswith("train step")]  # type: ignore[index]
    assert steps == [r["step"] for r in records if r["kind"] == "train"]
    epochs = [line for line in watched if line.startswith("epoch ")]
    assert [int(line.split(":")[0].split()[1]) for line in epochs] == [1, 2]
    assert watched[-1] == f"run {run_id} COMPLETED"

    # watch on a terminal: the live screen, its last frame at the end
    drawn = screen["screen"]
    assert "\x1b[" in drawn and "train steps" in drawn and "COMPLETED" in drawn
    assert f"{steps[-1]}/{steps[-1]}" in drawn

    # none of the three loads torch (or numpy, webdataset, textual): they start fast on a login node
    probe = (
        "import sys, io, contextlib; from clusterdeck.app.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    codes = [main([c, '{run_id}']) for c in ('logs', 'metrics', 'watch')]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'webdataset', "
        "'numpy', 'textual'))\n"
        "print(codes, heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "[0, 0, 0] []", proc.stderr


def test_watch_exits_with_the_runs_code_when_it_fails(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "diverges"\n' + train_section(sample_shards, lr=1e12, epochs=1))
    run_id = json.loads(run_cli("submit", str(spec), "--json").out)["run_id"]
    watched = run_cli("watch", run_id, timeout=240)
    assert watched.code == 1, watched.err
    assert watched.out.splitlines()[-1] == f"run {run_id} FAILED"
    assert run_cli("logs", run_id, "--follow", "--err").code == 1
    shown = run_cli("metrics", run_id, "--kind", "system", "--kind", "train")
    assert shown.code == 0 and shown.out
    assert {line.split()[1] for line in shown.out.splitlines()} <= {"system", "train"}


def test_bad_input_to_the_following_commands_is_named(home: Path) -> None:
    for args in (("logs", "nope"), ("metrics", "nope"), ("watch", "nope")):
        result = run_cli(*args)
        assert result.code == 2 and "nope" in result.err and "Traceback" not in result.err
    result = run_cli("logs", "x", "--rank", "-1")
    assert result.code == 2 and "--rank" in result.err


def _add(pipeline: Pipeline, n: int) -> None:
    for _ in range(n):
        pipeline.add(3)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pipeline_counts_add_up_over_worker_processes(method: str) -> None:
    pipeline = Pipeline()
    pipeline.add(10, samples=2)
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=_add, args=(pipeline, 5000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert pipeline.totals() == (10 + 4 * 5000 * 3, 2 + 4 * 5000)


ATTACHED = """
import multiprocessing, sys
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from tests.test_telemetry import _add
if __name__ == "__main__":  # not again in the spawned workers, which import this module
    pipeline = Pipeline.attach(sys.argv[1])
    pipeline.add(7, samples=1)
    for method in ("fork", "spawn"):
        procs = [multiprocessing.get_context(method).Process(target=_add, args=(pipeline, 500)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
"""


def test_a_shared_pipeline_counts_what_an_exec_d_process_and_its_workers_add(tmp_path: Path) -> None:
    """A [script] task is exec'd, not forked: it attaches by name, and its own workers (forked or spawned) add too."""
    pipeline = Pipeline.shared()
    try:
        pipeline.add(10, samples=2)
        script = tmp_path / "attached.py"
        script.write_text(ATTACHED)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, str(script), pipeline.name], env=env, capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr
        assert pipeline.totals() == (10 + 7 + 4 * 500 * 3, 2 + 1 + 4 * 500)
        assert Path("/dev/shm", pipeline.name).exists()  # the attached process left the segment to its maker
    finally:
        pipeline.unlink()
    assert not Path("/dev/shm", pipeline.name).exists()


def samples_of(tmp_path: Path, count: int, *, node_wide: bool = True, gpu: int | None = None) -> list[dict]:
    """The records of a sampler stopped once it has taken ``count`` samples (its last one, taken as it stops,
    makes at least ``count + 1``), however long that took on a loaded machine."""
    out = tmp_path / "t.jsonl"
    sampler = Sampler(MetricsWriter(out, rank=3), Pipeline(), interval=0.05, node_wide=node_wide)
    if gpu is not None:
        sampler.watch_gpu(gpu)
    deadline = time.monotonic() + 60
    with sampler:
        while sampler.samples < count:
            assert sampler._thread.is_alive() and time.monotonic() < deadline, "the sampler stopped sampling"
            time.sleep(0.01)
    return jsonl(out) if out.exists() else []


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a CPU-only node writes")
def test_without_a_gpu_there_are_no_gpu_records_and_node_figures_come_from_local_rank_0(tmp_path: Path) -> None:
    records = samples_of(tmp_path, 4, gpu=0)
    assert {r["kind"] for r in records} == {"system"} and len(records) >= 5
    assert all(r["rank"] == 3 and "disk_read_mb_s" in r and "net_rx_mb_s" in r for r in records)
    (tmp_path / "other").mkdir()
    other = samples_of(tmp_path / "other", 2, node_wide=False)
    assert len(other) >= 3 and not any("disk_read_mb_s" in r for r in other)


class FakeNvml(types.ModuleType):
    """NVML as nvidia-ml-py exposes it, for one 80 GB GPU; the only part of the GPU path that is faked."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.asked: list[str] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.asked.append(uuid)
        return "handle-0"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        assert handle == "handle-0"
        return types.SimpleNamespace(used=30 * 2**30, total=80 * 2**30, free=50 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return types.SimpleNamespace(gpu=87, memory=40)


def test_gpu_records_from_nvml_and_the_allocator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    # the CUDA runtime is absent here: torch's side of the boundary answers as it would on device 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="a1b2-c3"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 20 * 2**20 * (i + 1))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 24 * 2**20 * (i + 1))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: 22 * 2**20 * (i + 1))
    records = samples_of(tmp_path, 3, gpu=1)
    gpus = [r for r in records if r["kind"] == "gpu"]
    assert nvml.asked == ["GPU-a1b2-c3"]
    assert len(gpus) >= 4 and len(gpus) == len([r for r in records if r["kind"] == "system"])
    g = gpus[-1]
    assert (g["gpu"], g["rank"], g["used_mb"], g["total_mb"], g["util_pct"]) == (
        1,
        3,
        30 * 2**30 / 1e6,
        80 * 2**30 / 1e6,
        87,
    )
    assert (g["allocated_mb"], g["reserved_mb"], g["peak_mb"]) == (40 * 2**20 / 1e6, 48 * 2**20 / 1e6, 44 * 2**20 / 1e6)


def test_nvml_missing_leaves_the_allocators_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = FakeNvml()

    def no_driver() -> None:
        raise FakeNvml.NVMLError("NVML Shared Library Not Found")

    broken.nvmlInit = no_driver  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="x"))
    for name in ("memory_allocated", "memory_reserved", "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, lambda i: 2**20)
    gpus = [r for r in samples_of(tmp_path, 2, gpu=0) if r["kind"] == "gpu"]
    assert len(gpus) >= 3 and all("used_mb" not in g and g["allocated_mb"] == 2**20 / 1e6 for g in gpus)


class FakeMigNvml(types.ModuleType):
    """NVML as nvidia-ml-py exposes it, for GPUs some of which are split into MIG slices; only what NVML answers.

    ``gpus``: each GPU's UUID (without ``GPU-``) and its MIG slices' UUIDs (without ``MIG-``), or None where MIG is
    off; ``mig_aware``: R470 and later drivers find a slice by ``MIG-<uuid>``, older ones only by walking the GPU."""

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NOT_FOUND = 6

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__({3: "Not Supported", 6: "Not Found"}[value])
            self.value = value

    def __init__(self, gpus: list[tuple[str, list[str] | None]], *, mig_aware: bool = True) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.mig_aware = mig_aware
        self.asked: list[str] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[int, int | None]:
        return (index, None)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> tuple[int, int | None]:
        self.asked.append(uuid)
        for handle in self._handles():
            if self.nvmlDeviceGetUUID(handle) == uuid and (handle[1] is None or self.mig_aware):
                return handle
        raise self.NVMLError(self.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: tuple[int, int | None]) -> str:
        gpu, slot = handle
        uuid, slices = self.gpus[gpu]
        return f"GPU-{uuid}" if slot is None else f"MIG-{(slices or [])[slot]}"

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: tuple[int, int | None]) -> int:
        if self.gpus[handle[0]][1] is None:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return 7  # an A100/H100's slots

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: tuple[int, int | None], index: int) -> tuple[int, int]:
        if index >= len(self.gpus[handle[0]][1] or []):
            raise self.NVMLError(self.NVML_ERROR_NOT_FOUND)
        return (handle[0], index)

    def nvmlDeviceGetMemoryInfo(self, handle: tuple[int, int | None]) -> Any:
        slot = handle[1]
        total = 80 * 2**30 if slot is None else (slot + 1) * 10 * 2**30  # slice k holds (k + 1) × 10 GiB
        return types.SimpleNamespace(used=total // 4, total=total, free=total - total // 4)

    def nvmlDeviceGetUtilizationRates(self, handle: tuple[int, int | None]) -> Any:
        if handle[1] is not None:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)  # NVML has no utilisation for a MIG slice
        return types.SimpleNamespace(gpu=87, memory=40)

    def _handles(self) -> list[tuple[int, int | None]]:
        return [(g, None) for g in range(len(self.gpus))] + [
            (g, s) for g, (_, slices) in enumerate(self.gpus) for s in range(len(slices or []))
        ]


GPUS = [("0000-full", None), ("1111-split", ["aaaa-slice0", "bbbb-slice1"])]


@pytest.mark.parametrize("mig_aware", [True, False], ids=["R470+", "older-driver"])
@pytest.mark.parametrize(
    ("torch_uuid", "total_gib", "util"),
    [("0000-full", 80, 87.0), ("aaaa-slice0", 10, None), ("bbbb-slice1", 20, None)],
    ids=["full-gpu", "mig-slice-0", "mig-slice-1"],
)
def test_the_probe_finds_a_whole_gpu_or_the_right_mig_slice(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mig_aware: bool,
    torch_uuid: str,
    total_gib: int,
    util: float | None,
) -> None:
    """torch reports a slice's own UUID (no prefix); NVML names it MIG-…, and two slices of one GPU differ in size."""
    from clusterdeck.jobs.telemetry.gpu import GpuProbe

    nvml = FakeMigNvml(GPUS, mig_aware=mig_aware)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=torch_uuid))
    for name in ("memory_allocated", "memory_reserved", "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, lambda i: 2**20)
    probe = GpuProbe.open(0)
    assert probe is not None and probe.handle is not None, capsys.readouterr().err
    first, second = probe.sample(), probe.sample()
    for record in (first, second):  # a slice keeps its memory figures after NVML refused its utilisation
        assert record["total_mb"] == total_gib * 2**30 / MB
        assert record["used_mb"] == total_gib * 2**30 // 4 / MB
        assert record.get("util_pct") == util
    assert "NVML" not in capsys.readouterr().err


def test_a_uuid_nvml_does_not_know_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clusterdeck.jobs.telemetry.gpu import GpuProbe

    monkeypatch.setitem(sys.modules, "pynvml", FakeMigNvml(GPUS))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="9999-gone"))
    probe = GpuProbe.open(0)
    assert probe is not None and probe.handle is None
    assert "NVML unavailable (no NVML device has UUID 9999-gone)" in capsys.readouterr().err
