"""``clusterdeck logs``, ``metrics`` and ``watch``: following a run's files until it ends.

Files are read every ``FILES_S``, the run's state every ``STATE_S`` (one ``sacct`` on SLURM).
When the run has ended, reading goes on until the files stop growing (a job's last lines
can land after its status says it is done), then a partial last line is printed too.
On a remote deck a dropped connection is waited out: the deck reconnects, and the tails go
on from their offsets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.cli import EXIT_OK, exit_for

if TYPE_CHECKING:
    from jobs.deck.base import Deck
    from jobs.rundir import RunPaths
    from jobs.status import RunView

FILES_S, STATE_S = 0.5, 2.0
SETTLE_POLLS, JOBS_MAX_S, FINAL_MAX_S = 4, 60.0, 30.0


def follow(
    deck: Deck,
    paths: RunPaths,
    poll: Callable[[bool], bool],
    *,
    keep_going: bool,
    on_view: Callable[[RunView], None] | None = None,
) -> RunView | None:
    """Calls ``poll(final)`` (True when it found something) until the run ends; returns the last view.

    ``on_view`` gets each fresh view of the run. Without ``keep_going``, reads what is there now
    and returns None. After the run has ended: until the scheduler no longer has its jobs (they
    print after their status says done), then until the files are quiet for ``SETTLE_POLLS``.
    """
    poll = _riding_out_drops(poll)
    if not keep_going:
        _drain(poll)
        return None
    checked, view, ended_at = 0.0, None, 0.0
    while True:
        if time.monotonic() - checked >= STATE_S:
            view, checked = deck.view(paths), time.monotonic()
            if on_view is not None:
                on_view(view)
            if view.ended:
                ended_at = ended_at or time.monotonic()
                if not view.jobs_alive or time.monotonic() - ended_at > JOBS_MAX_S:
                    break
        if not poll(False):
            time.sleep(FILES_S)
    quiet = 0
    while quiet < SETTLE_POLLS:
        quiet = 0 if poll(False) else quiet + 1
        time.sleep(FILES_S)
    _drain(poll)
    return view


def _riding_out_drops(poll: Callable[[bool], bool]) -> Callable[[bool], bool]:
    """``poll``, but a dropped connection counts as "more to read": the next call reconnects and goes on."""

    def ride(final: bool) -> bool:
        try:
            return poll(final)
        except ConnectionError:
            time.sleep(FILES_S)
            return True

    return ride


def _drain(poll: Callable[[bool], bool]) -> None:
    """Reads to the end, partial last lines included; a writer that never stops is left after FINAL_MAX_S."""
    deadline = time.monotonic() + FINAL_MAX_S
    while poll(True) and time.monotonic() < deadline:
        pass


def cmd_logs(args: argparse.Namespace, deck: Deck, paths: RunPaths) -> int:
    from jobs.tail.run import LogFile, RunLogs

    logs = RunLogs(paths, deck.files, err=args.err, rank=args.rank)
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

    view = follow(deck, paths, poll, keep_going=args.follow)
    logs.close()
    return exit_for(view.state) if view else EXIT_OK


def cmd_metrics(args: argparse.Namespace, deck: Deck, paths: RunPaths) -> int:
    from jobs.protocol import stamp
    from jobs.tail.run import RunMetrics

    kinds = {k for spec in args.kind for k in spec.split(",") if k} or None
    metrics = RunMetrics(paths, deck.files, kinds=kinds)

    def poll(final: bool) -> bool:
        records = metrics.poll(final)
        for record in records:  # --json: each line a metric-record document, the record's fields after the stamp
            line = json.dumps(stamp("metric-record", record), separators=(",", ":")) if args.json else ""
            print(line or format_record(record))
        sys.stdout.flush()
        return bool(records) or metrics.more

    view = follow(deck, paths, poll, keep_going=args.follow)
    metrics.close()
    for path, (count, first) in sorted(metrics.bad.items()):
        print(
            f"clusterdeck: warning: {path}: {count} line(s) are not records (first: line {first}); skipped",
            file=sys.stderr,
        )
    return exit_for(view.state) if view else EXIT_OK


def format_record(record: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(record.get("time", 0)))
    head = f"{when} {record.get('kind', '?'):<10} {record.get('node', '')}/{record.get('rank', 0)}"
    values = " ".join(f"{k}={_short(v)}" for k, v in record.items() if k not in ("time", "kind", "node", "rank"))
    return f"{head} {values}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def cmd_watch(args: argparse.Namespace, deck: Deck, paths: RunPaths) -> int:
    from app.watch import LineReporter, Screen
    from jobs.tail.live import LiveRun
    from jobs.tail.run import RunMetrics

    metrics, live = RunMetrics(paths, deck.files), LiveRun()
    current: list[RunView] = []  # follow() gives the first view before the first poll
    out: LineReporter | Screen = Screen() if sys.stdout.isatty() else LineReporter(sys.stdout)

    def poll(final: bool) -> bool:
        records = metrics.poll(final)
        for raw in records:
            record = live.add(raw)
            if record is not None:  # None: a kind or major this clusterdeck does not read
                out.record(record, current[-1])
        out.show(current[-1], live)
        return bool(records) or metrics.more

    def on_view(view: RunView) -> None:
        current[:] = [view]
        out.show(view, live)

    with out:
        follow(deck, paths, poll, keep_going=True, on_view=on_view)
    metrics.close()
    return exit_for(current[-1].state)
