"""The sampler thread: every ``interval`` seconds, one ``system`` record, and one ``gpu`` record on a CUDA rank.

``system`` (every rank): ``interval_s`` (the seconds the rates are over); ``cpu_pct`` (100 is
one core), ``rss_mb``, ``read_mb_s`` and ``write_mb_s`` of this rank's process and its children
(loader or pool workers; storage bytes, as ``/proc/PID/io`` counts them; RSS summed, so pages
shared with workers count more than once); ``data_mb_s`` and ``data_samples_s`` the data
pipeline read. Node-wide figures come from local rank 0 only, so a node is not counted once
per GPU: ``node_cpu_pct`` (100 is every core), ``node_mem_used_mb``, ``disk_read_mb_s`` and
``disk_write_mb_s`` (block devices: local SSD, not NFS or Lustre, which show as network),
``net_rx_mb_s`` and ``net_tx_mb_s``.

``gpu`` (see ``jobs.telemetry.gpu``): the device's memory and utilisation, and this rank's
allocator. The thread only reads counters; it never blocks the job, and a failure to
read one stops it with one line in the job's stderr, never the job. The last record, written
as the job ends, covers the part-interval since the one before, so rates × ``interval_s``
add up to what the job did.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.telemetry.command_gpu import CommandGpuProbe
from clusterdeck.jobs.telemetry.gpu import GpuProbe
from clusterdeck.jobs.telemetry.pipeline import Pipeline

MB = 1e6


@dataclass
class Reading:
    """Cumulative counters at one moment; two readings make one record of rates."""

    time: float
    cpu_s: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0
    rss: int = 0
    data_bytes: int = 0
    data_samples: int = 0
    disk_read: int = 0
    disk_write: int = 0
    net_rx: int = 0
    net_tx: int = 0


class Sampler:
    def __init__(self, writer: MetricsWriter, pipeline: Pipeline | None, *, interval: float, node_wide: bool) -> None:
        self.writer = writer
        self.pipeline = pipeline
        self.interval = interval
        self.node_wide = node_wide
        self.gpu: GpuProbe | CommandGpuProbe | None = None
        self.cost_s = 0.0
        """CPU seconds the sampler spent (bench/telemetry.py)."""
        self.samples = 0
        self._process = psutil.Process()
        self._debt: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clusterdeck-telemetry", daemon=True)

    def watch_gpu(self, index: int) -> None:
        """From now on, also sample CUDA device ``index`` (called once the rank has chosen its device)."""
        if self.interval > 0:
            self.gpu = GpuProbe.open(index)

    def watch_command_gpu(self, local_rank: int) -> None:
        """From now on, also sample the GPU a [script] task's command uses (``jobs.telemetry.command_gpu``)."""
        if self.interval > 0:
            self.gpu = CommandGpuProbe.open(local_rank, self._tree)

    def _tree(self) -> set[int]:
        try:
            return {self._process.pid, *(p.pid for p in self._process.children(recursive=True))}
        except psutil.Error:
            return {self._process.pid}

    def __enter__(self) -> Sampler:
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            if self.node_wide:
                psutil.cpu_percent()  # the first call starts psutil's own interval
            previous = self.read()
            stopped = False
            while not stopped:  # the last record covers the part-interval up to the end of the job
                stopped = self._stop.wait(self.interval)
                started = time.thread_time()
                current = self.read()
                self.writer.write("system", **self.rates(previous, current))
                if self.gpu is not None:
                    self.writer.write("gpu", **self.gpu.sample())
                previous = current
                self.samples += 1
                self.cost_s += time.thread_time() - started
        except Exception as exc:
            print(f"[clusterdeck] telemetry stopped: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def read(self) -> Reading:
        r = Reading(time.monotonic())
        if self.pipeline is not None:
            r.data_bytes, r.data_samples = self.pipeline.totals()
        for process in [self._process, *self._process.children(recursive=True)]:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu = times.user + times.system
                    if process is self._process:  # reaped children's CPU; their I/O is in io_counters (Linux)
                        cpu += times.children_user + times.children_system
                    rss = process.memory_info().rss
                    io = process.io_counters() if hasattr(process, "io_counters") else None  # none on macOS
            except psutil.Error:  # a worker that just exited: the next reading has it in its parent's figures
                continue
            r.cpu_s += cpu
            r.rss += rss
            if io is not None:
                r.read_bytes += io.read_bytes
                r.write_bytes += io.write_bytes
        if self.node_wide:
            disk = psutil.disk_io_counters()
            if disk is not None:
                r.disk_read, r.disk_write = disk.read_bytes, disk.write_bytes
            net = psutil.net_io_counters()
            if net is not None:
                r.net_rx, r.net_tx = net.bytes_recv, net.bytes_sent
        return r

    def rates(self, a: Reading, b: Reading) -> dict[str, Any]:
        dt = max(b.time - a.time, 1e-6)

        def rate(name: str, scale: float = MB) -> float:
            # A worker exiting between two readings can make a sum dip, then jump when it is reaped: a dip is
            # carried as a debt against the next intervals, so rates are never negative and still add up.
            delta = getattr(b, name) - getattr(a, name) - self._debt.get(name, 0)
            self._debt[name] = max(-delta, 0)
            return max(delta, 0) / scale / dt

        record: dict[str, Any] = {
            "interval_s": round(dt, 4),
            "cpu_pct": 100 * rate("cpu_s", 1),
            "rss_mb": b.rss / MB,
            "read_mb_s": rate("read_bytes"),
            "write_mb_s": rate("write_bytes"),
            "data_mb_s": rate("data_bytes"),
            "data_samples_s": rate("data_samples", 1),
        }
        if self.node_wide:
            record.update(
                node_cpu_pct=psutil.cpu_percent(),
                node_mem_used_mb=psutil.virtual_memory().used / MB,
                disk_read_mb_s=rate("disk_read"),
                disk_write_mb_s=rate("disk_write"),
                net_rx_mb_s=rate("net_rx"),
                net_tx_mb_s=rate("net_tx"),
            )
        return record
