"""``clusterdeck stage``: copy a shard set into a node cache, verified, as a training job's stage phase does."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clusterdeck.app.commands.base import Subparsers, _positive, print_json
from clusterdeck.app.exitcodes import EXIT_OK
from clusterdeck.app.progress import ByteMeter, add_quiet
from clusterdeck.jobs.errors import UserError

NAME = "stage"
LOCAL_ONLY = True


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="copy a shard set into a node cache, verified (what jobs with keep = true reuse)")
    s.add_argument("shards", type=Path, metavar="SHARDS", help="shard set directory (with index.json)")
    s.add_argument("--to", type=Path, required=True, metavar="PATH", help="node-local directory, as train.stage.to")
    s.add_argument("--split", action="append", metavar="NAME", help="stage only this split (repeatable)")
    s.add_argument("--streams", type=_positive, default=4, help="files copied in parallel (default 4)")
    s.add_argument("--max-mb-s", type=float, default=0.0, help="cap on the copy rate in MB/s (default: none)")
    s.add_argument("--json", action="store_true", help="print the final tally as JSON")
    add_quiet(s)
    return s


def run(args: argparse.Namespace) -> int:
    from clusterdeck.jobs.stage.warm import summary, warm_cache

    if args.max_mb_s < 0:
        raise UserError(f"--max-mb-s: must be 0 (no cap) or more, got {args.max_mb_s}")
    meter = ByteMeter("stage", quiet=args.quiet)

    def progress(r: dict[str, Any]) -> None:
        meter.update(r["bytes_done"], r["bytes_total"])

    with meter:
        cache, tally = warm_cache(
            args.shards, args.to, splits=args.split, streams=args.streams, max_mb_s=args.max_mb_s, on_progress=progress
        )
    if args.json:
        print_json("stage-tally", {"cache": str(cache), **tally.record(final=True)})  # the whole run's rate
    else:
        print(f"{summary(tally)}\n{cache}")
    return EXIT_OK
