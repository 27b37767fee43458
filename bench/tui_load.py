"""The app under load: a job writing 5,000 log lines/s and 10 metrics records/s, its detail on screen.

A writer process plays the job: a run recorded by the engine (record, spec, RUNNING status),
its submitit log growing by 5,000 lines/s in 100 ms bursts, ``metrics.jsonl`` by 10 ``train``
records/s and its telemetry file by one ``system`` record/s. The real app (``clusterdeck
--runs-root …``) runs in a pseudo-terminal of 120×40, as over SSH, with a thread draining
what it draws. The bench opens the run and then measures:

- keypress to redraw: ``p`` is written to the terminal and the clock stops when the log's
  status line, redrawn, reads "paused" (or "following" again) in the app's output;
- CPU: the app process's user+system seconds over a window of steady following, as a share
  of one core;
- memory: the app's RSS every 10 s for the whole run (10 minutes by default).

``--tab io|curves`` shows that tab of the detail instead of the log (the log still arrives): its
charts redraw as the records come, and the key timed is ``x``, until the charts' x axis is
redrawn with its other name ("wall time", then "epoch" again).

    python bench/tui_load.py [--seconds 600] [--presses 40] [--lines-per-s 5000] [--records-per-s 10] [--tab log]

``--idle-runs N`` measures the other case instead: the app idle on its runs list, over a runs root of N
ended runs (made as bench/ls.py makes them, their index written by a first ``clusterdeck ls``) and three
live ones (local runs of this process, so that each refresh asks about them): its CPU share of one core
over ``--cpu-window`` seconds, after the list has shown and two refreshes have passed.

    python bench/tui_load.py --idle-runs 10000 [--cpu-window 60]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

from clusterdeck.jobs import atomic
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.records import Attempt, JobRef, PartStatus, RunRecord, StepRecord, save_record, save_status
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runs import create_run_dir
from clusterdeck.jobs.runspec import validate

REPO = Path(__file__).resolve().parent.parent
COLUMNS, ROWS = 120, 40
ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
TABS = {"log": 0, "io": 1, "curves": 3}
"""The detail's tabs a bench may show, by how many times → moves to it from the log (the tabs have the focus)."""


def write_job(root: Path, lines_per_s: int, records_per_s: int, stop_after: float) -> None:
    """The job: log lines and records at the asked rates, in bursts every 100 ms, for ``stop_after`` s."""
    while not root.exists():  # the bench records the run, naming this process, then links it here
        time.sleep(0.05)
    paths = RunPaths(root.resolve())
    job_id = str(os.getpid())
    started = time.time()
    save_status(
        paths,
        PartStatus(step="train", attempt=1, part="main", state="RUNNING", node=socket.gethostname(),
                   job_id=job_id, started_at=started, progress={"step": 0, "steps_total": 1e6}),
    )  # fmt: skip
    paths.submitit.mkdir(parents=True, exist_ok=True)
    paths.telemetry_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsWriter(paths.metrics)
    telemetry = MetricsWriter(paths.telemetry(job_id, 0))
    step = line = 0
    tick = 0.1
    with (paths.submitit / f"{job_id}_0_log.out").open("a") as log:
        t = time.monotonic()
        while time.time() - started < stop_after:
            burst = []
            for _ in range(int(lines_per_s * tick)):
                line += 1
                burst.append(
                    f"[rank 0] step {line:>9} loss {2.5 + (line % 97) / 97:.4f} lr 0.1000 "
                    f"img/s {1200 + line % 50:.1f} data wait 0.03 | batch {line % 5005}/5005\n"
                )
            log.write("".join(burst))
            log.flush()
            for _ in range(max(1, round(records_per_s * tick))):
                step += 1
                metrics.write("train", step=step, epoch=step // 1000, loss=2.0 + (step % 89) / 89, lr=0.1,
                              images_per_s=1200.0 + step % 50, data_wait_fraction=0.03, steps_total=1e6)  # fmt: skip
            if line % lines_per_s < lines_per_s * tick:
                telemetry.write("system", interval_s=1.0, cpu_pct=99.0, rss_mb=2048.0, read_mb_s=120.0,
                                write_mb_s=0.0, data_mb_s=115.0, data_samples_s=1010.0)  # fmt: skip
            t += tick
            time.sleep(max(0.0, t - time.monotonic()))


def make_run(root: Path, writer_pid: int) -> RunPaths:
    paths = create_run_dir(root)
    spec = validate({"name": "load", "train": {"train_shards": "/nonexistent"}}, check_paths=False)
    atomic.write_json(paths.spec, spec.model_dump(mode="json"))
    started = psutil.Process(writer_pid).create_time()
    job = JobRef(job_id=str(writer_pid), role="main", submitted_at=time.time(), parts=["main"], pid_started_at=started)
    attempt = Attempt(number=1, submitted_at=time.time(), jobs=[job])
    record = RunRecord(run_id=paths.run_id, name="load", created_at=time.time(), executor="local",
                       steps=[StepRecord(name="train", attempts=[attempt])], outputs={})  # fmt: skip
    save_record(paths, record)
    return paths


class Terminal:
    """The app in a pty; a thread drains its output and wakes a waiter when a text shows up."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO,
                                     start_new_session=True)  # fmt: skip
        os.close(slave)
        self.bytes = 0
        self.tail = b""
        self.wanted: bytes | None = None
        self.found = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.bytes += len(chunk)
                text = ANSI.sub(b"", self.tail + chunk)
                self.tail = chunk[-4096:]
                if self.wanted is not None and self.wanted in text:
                    self.wanted = None
                    self.found.set()

    def expect(self, text: str, timeout: float) -> bool:
        with self.lock:
            self.wanted, self.tail = text.encode(), b""
            self.found.clear()
        return self.found.wait(timeout)

    def press(self, key: str, expect: str, timeout: float = 5.0) -> float | None:
        """Seconds from the key written to ``expect`` drawn; None if it never was."""
        with self.lock:
            self.wanted, self.tail = expect.encode(), b""
            self.found.clear()
        start = time.perf_counter()
        os.write(self.master, key.encode())
        return time.perf_counter() - start if self.found.wait(timeout) else None

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600, help="how long the load runs (memory is watched all along)")
    p.add_argument("--presses", type=int, default=40)
    p.add_argument("--lines-per-s", type=int, default=5000)
    p.add_argument("--records-per-s", type=int, default=10)
    p.add_argument("--cpu-window", type=float, default=30.0, help="seconds of steady following for the CPU share")
    p.add_argument("--tab", choices=TABS, default="log", help="the detail's tab on screen while measuring")
    p.add_argument("--idle-runs", type=int, help="measure the app idle on a runs root of this many ended runs")
    p.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # the writer process's mode
    args = p.parse_args()
    if args.write:
        write_job(args.write, args.lines_per_s, args.records_per_s, args.seconds)
        return
    if args.idle_runs:
        idle(args.idle_runs, args.cpu_window)
        return

    home = Path(tempfile.mkdtemp(prefix="cd-tui-load-"))
    # the writer starts first, so the record can name its pid; it waits for the run directory
    writer_dir = home / "writer-run"
    writer = subprocess.Popen(
        [sys.executable, __file__, "--write", str(writer_dir), "--seconds", str(args.seconds + 120),
         "--lines-per-s", str(args.lines_per_s), "--records-per-s", str(args.records_per_s)],
        cwd=REPO,
    )  # fmt: skip
    paths = make_run(home / "runs", writer.pid)
    writer_dir.symlink_to(paths.root)
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "CLUSTERDECK_HOME": str(home)}
    term = Terminal([sys.executable, "-m", "clusterdeck.app.cli", "--runs-root", str(home / "runs")], env)
    app = psutil.Process(term.proc.pid)
    try:
        assert term.expect(paths.run_id, 30), "the runs list never showed the run"
        time.sleep(1.0)
        assert term.press("\r", "following", 30) is not None, "the run's detail never opened"
        assert term.expect("batch", 30), "the log never showed the job's lines"
        for _ in range(TABS[args.tab]):
            os.write(term.master, b"\x1b[C")
        if args.tab != "log":
            assert term.expect(" epoch ", 30), f"the {args.tab} tab never showed its charts"
        time.sleep(5.0)  # the backlog read, the panels filling

        cpu0, wall0 = app.cpu_times(), time.monotonic()
        time.sleep(args.cpu_window)
        cpu1, wall1 = app.cpu_times(), time.monotonic()
        cpu_share = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0)

        latencies, missed = [], 0
        key, shown = ("p", ("paused", "following")) if args.tab == "log" else ("x", ("wall time", " epoch "))
        for k in range(args.presses):
            took = term.press(key, shown[k % 2])
            if took is None:
                missed += 1
            else:
                latencies.append(took)
            time.sleep(0.25)
        if args.presses % 2:
            term.press(key, shown[1])

        rss = [(time.monotonic(), app.memory_info().rss)]
        started = time.monotonic()
        deadline = started + max(0.0, args.seconds - (time.monotonic() - wall0))
        while time.monotonic() < deadline:
            time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
            rss.append((time.monotonic(), app.memory_info().rss))
            assert term.proc.poll() is None, "the app exited"
        log = next(paths.submitit.glob("*_log.out"))
        with log.open("rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    finally:
        term.close()
        writer.terminate()
        writer.wait(10)
        shutil.rmtree(home, ignore_errors=True)  # the log alone is 300 MB after 10 minutes

    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    half = len(rss) // 2
    print(f"load: {args.lines_per_s} log lines/s and {args.records_per_s} records/s written "
          f"({lines:,} lines in all); app in a {COLUMNS}x{ROWS} pty, the run's detail following the log "
          f"on its {args.tab} tab")  # fmt: skip
    print(f"keypress to redraw ('{key}', {len(latencies)} presses, {missed} missed): median "
          f"{1e3 * statistics.median(latencies):.0f} ms, p95 {1e3 * p95:.0f} ms, "
          f"max {1e3 * latencies[-1]:.0f} ms (target < 100 ms)")  # fmt: skip
    print(f"CPU while following on the {args.tab} tab: {100 * cpu_share:.1f}% of one core "
          f"over {args.cpu_window:.0f} s (target < 30%)")  # fmt: skip
    mb = [r / 1e6 for _, r in rss]
    print(f"RSS over {rss[-1][0] - rss[0][0]:.0f} s: start {mb[0]:.0f} MB, max {max(mb):.0f} MB, end {mb[-1]:.0f} MB; "
          f"second half grew {max(mb[half:]) - mb[half]:+.1f} MB")  # fmt: skip


def idle(count: int, window: float) -> None:
    """The app on its runs list, nothing to do but refresh it: the CPU share of one core over ``window`` s."""
    from ls import make_runs  # bench/ls.py, beside this script

    home = Path(tempfile.mkdtemp(prefix="cd-tui-idle-"))
    root = home / "runs"
    make_runs(root, count)
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "CLUSTERDECK_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "clusterdeck.app.cli", "ls"], env=env, capture_output=True, check=True)
    live = [make_run(root, os.getpid()) for _ in range(3)]  # RUNNING while this process lives
    term = Terminal([sys.executable, "-m", "clusterdeck.app.cli", "--runs-root", str(root)], env)
    app = psutil.Process(term.proc.pid)
    try:
        started = time.monotonic()
        assert term.expect(live[-1].run_id, 60), "the runs list never showed the runs"
        shown = time.monotonic() - started
        time.sleep(12.0)  # two refreshes (every 5 s) after the first
        cpu0, wall0 = app.cpu_times(), time.monotonic()
        time.sleep(window)
        cpu1, wall1 = app.cpu_times(), time.monotonic()
        assert term.proc.poll() is None, "the app exited"
        rss = app.memory_info().rss
    finally:
        term.close()
        shutil.rmtree(home, ignore_errors=True)
    share = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0)
    print(f"app idle on its runs list: {count:,} ended runs and 3 live ones, in a {COLUMNS}x{ROWS} pty; "
          f"first shown after {shown:.1f} s; RSS {rss / 1e6:.0f} MB")  # fmt: skip
    print(f"CPU while idle: {100 * share:.1f}% of one core over {wall1 - wall0:.0f} s (target < 5%)")


if __name__ == "__main__":
    main()
