"""``clusterdeck metrics``: a run's metrics and telemetry records, one line each; ``-f`` follows them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from clusterdeck.app.commands.base import Subparsers, open_deck
from clusterdeck.app.exitcodes import EXIT_OK, exit_for
from clusterdeck.app.follow import follow

if TYPE_CHECKING:
    from clusterdeck.jobs.deck.base import Deck
    from clusterdeck.jobs.rundir import RunPaths

NAME = "metrics"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="print a run's metrics and telemetry records")
    s.add_argument("run")
    s.add_argument("--kind", action="append", default=[], metavar="K", help="only records of kind K (repeatable)")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    s.add_argument("--json", action="store_true", help="one JSON object per line: a record, schema and clusterdeck")
    return s


def run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        return print_metrics(args, deck, deck.resolve(args.run))


def print_metrics(args: argparse.Namespace, deck: Deck, paths: RunPaths) -> int:
    from clusterdeck.jobs.protocol import stamp
    from clusterdeck.jobs.tail.run import RunMetrics

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
