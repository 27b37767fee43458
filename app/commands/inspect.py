"""``clusterdeck inspect``: what a shard input or a shard set holds; a shard set is checked against its index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clusterdeck.app.commands.base import Subparsers, print_json
from clusterdeck.app.exitcodes import EXIT_FAILED, EXIT_OK
from clusterdeck.app.progress import ByteMeter, add_quiet

NAME = "inspect"
LOCAL_ONLY = True


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(
        NAME, help="what a shard input or a shard set holds: counts, classes, sizes, bytes; checks shard sets"
    )
    s.add_argument("path", type=Path, metavar="PATH", help="a shard set (with index.json), an input directory or file")
    s.add_argument(
        "--format", metavar="F", help="the layout of PATH: a shard.*.format, or 'shards' (default: detected)"
    )
    s.add_argument("--devkit", type=Path, metavar="F", help="ILSVRC2012 devkit (.tar.gz or directory): val labels")
    s.add_argument("--ground-truth", type=Path, metavar="F", help="val ground truth, with --synsets (or --devkit)")
    s.add_argument("--synsets", type=Path, metavar="F", help="meta.mat or wnid-per-line text: val or npz class names")
    s.add_argument(
        "--split",
        metavar="S",
        help="hf-parquet: which files of a directory (train, validation …); cifar: train (default) or test",
    )
    s.add_argument("--labels", choices=("fine", "coarse"), help="CIFAR-100: the fine (default) or the coarse labels")
    s.add_argument("--prefix", metavar="DIR", help="a tar of class folders: the folder in it that holds them")
    s.add_argument("--no-verify", action="store_true", help="shard sets: check sizes only, not checksums")
    s.add_argument(
        "--sha256", action="store_true", help="shard sets: check sha256, not the fast checksum (xxh3-128) the index has"
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    add_quiet(s)
    return s


def run(args: argparse.Namespace) -> int:
    from clusterdeck.app.render.inspect import render
    from clusterdeck.jobs.shard.inspect import failures, inspect_path

    meter = ByteMeter("inspect", quiet=args.quiet)

    with meter:
        report = inspect_path(
            args.path,
            args.format,
            devkit=args.devkit,
            ground_truth=args.ground_truth,
            synsets=args.synsets,
            split=args.split,
            labels=args.labels,
            prefix=args.prefix,
            verify=False if args.no_verify else "sha256" if args.sha256 else True,
            progress=meter.advance,
        )
    if args.json:
        print_json("inspect-report", report)
    else:
        print(render(report))
    for problem in failures(report):
        print(f"clusterdeck: error: {problem}", file=sys.stderr)
    return EXIT_OK if report["ok"] else EXIT_FAILED
