"""``clusterdeck logs``, ``metrics`` and ``watch``: following a run's files until it ends.

Files are read every ``FILES_S``, the run's state every ``STATE_S`` (one ``sacct`` on SLURM).
When the run has ended, reading goes on until the files stop growing (a job's last lines
can land after its status says it is done), then a partial last line is printed too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.rundir import RunPaths
    from jobs.status import RunView

FILES_S, STATE_S = 0.5, 2.0
SETTLE_POLLS, SETTLE_MAX_S = 2, 10.0
EXIT_OK, EXIT_FAILED = 0, 1


def exit_for(state: str) -> int:
    return EXIT_OK if state == "COMPLETED" else EXIT_FAILED


def follow(
    paths: RunPaths,
    poll: Callable[[bool], bool],
    *,
    keep_going: bool,
    on_view: Callable[[RunView], None] | None = None,
) -> RunView | None:
    """Calls ``poll(final)`` (True when it found something) until the run ends; returns the last view.

    ``on_view`` gets each fresh view of the run. Without ``keep_going``, reads what is there now
    and returns None.
    """
    from jobs.status import view_run

    if not keep_going:
        while poll(True):
            pass
        return None
    checked, view = 0.0, None
    while True:
        if time.monotonic() - checked >= STATE_S:
            view, checked = view_run(paths), time.monotonic()
            if on_view is not None:
                on_view(view)
            if view.ended:
                break
        if not poll(False):
            time.sleep(FILES_S)
    quiet, deadline = 0, time.monotonic() + SETTLE_MAX_S
    while quiet < SETTLE_POLLS and time.monotonic() < deadline:
        quiet = 0 if poll(False) else quiet + 1
        time.sleep(FILES_S)
    while poll(True):
        pass
    return view


def cmd_logs(args: argparse.Namespace, paths: RunPaths) -> int:
    from jobs.tail.run import LogFile, RunLogs

    logs = RunLogs(paths, err=args.err, rank=args.rank)
    shown: list[LogFile | None] = [None]

    def poll(final: bool) -> bool:
        lines = logs.poll(final)
        for file, line in lines:
            if file != shown[0]:
                print(f"==> job {file.job_id} rank {file.rank} ({file.stream}) <==")
                shown[0] = file
            print(line)
        sys.stdout.flush()
        return bool(lines) or logs.more

    view = follow(paths, poll, keep_going=args.follow)
    logs.close()
    return exit_for(view.state) if view else EXIT_OK


def cmd_metrics(args: argparse.Namespace, paths: RunPaths) -> int:
    from jobs.tail.run import RunMetrics

    kinds = {k for spec in args.kind for k in spec.split(",") if k} or None
    metrics = RunMetrics(paths, kinds=kinds)

    def poll(final: bool) -> bool:
        records = metrics.poll(final)
        for record in records:
            print(json.dumps(record, separators=(",", ":")) if args.json else format_record(record))
        sys.stdout.flush()
        return bool(records) or metrics.more

    view = follow(paths, poll, keep_going=args.follow)
    metrics.close()
    return exit_for(view.state) if view else EXIT_OK


def format_record(record: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(record.get("time", 0)))
    head = f"{when} {record.get('kind', '?'):<10} {record.get('node', '')}/{record.get('rank', 0)}"
    values = " ".join(f"{k}={_short(v)}" for k, v in record.items() if k not in ("time", "kind", "node", "rank"))
    return f"{head} {values}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def cmd_watch(args: argparse.Namespace, paths: RunPaths) -> int:
    from app.watch import LineReporter, Screen
    from jobs.status import view_run
    from jobs.tail.live import LiveRun
    from jobs.tail.run import RunMetrics

    metrics, live = RunMetrics(paths), LiveRun()
    current = [view_run(paths)]
    out: LineReporter | Screen = Screen() if sys.stdout.isatty() else LineReporter(sys.stdout)

    def poll(final: bool) -> bool:
        records = metrics.poll(final)
        for record in records:
            live.add(record)
            out.record(record, current[0])
        out.show(current[0], live)
        return bool(records) or metrics.more

    def on_view(view: RunView) -> None:
        current[0] = view
        out.show(view, live)

    with out:
        follow(paths, poll, keep_going=True, on_view=on_view)
    metrics.close()
    return exit_for(current[0].state)
