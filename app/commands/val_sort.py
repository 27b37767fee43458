"""``clusterdeck val-sort``: a flat ILSVRC2012 val set as ImageFolder class folders, by hard links."""

from __future__ import annotations

import argparse
from pathlib import Path

from clusterdeck.app.commands.base import Subparsers, print_json
from clusterdeck.app.exitcodes import EXIT_OK
from clusterdeck.app.progress import ByteMeter, add_quiet

NAME = "val-sort"
LOCAL_ONLY = True


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(
        NAME, help="sort a flat ILSVRC2012 val directory into <wnid>/ class folders (hard links) for ImageFolder"
    )
    s.add_argument("val_dir", type=Path, metavar="VAL_DIR", help="flat directory of ILSVRC2012_val_XXXXXXXX.JPEG")
    s.add_argument(
        "--ground-truth",
        type=Path,
        required=True,
        metavar="F",
        help="ILSVRC2012_validation_ground_truth.txt: one 1-based ILSVRC2012_ID per line",
    )
    s.add_argument(
        "--synsets", type=Path, required=True, metavar="F", help="devkit meta.mat, or a text file: wnid first per line"
    )
    s.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the class folders go (not in VAL_DIR)")
    s.add_argument("--json", action="store_true", help="print the counts as JSON")
    add_quiet(s)
    return s


def run(args: argparse.Namespace) -> int:
    from clusterdeck.jobs.shard.valsort import sort_val, summary

    with ByteMeter("val-sort", unit="images", quiet=args.quiet) as meter:
        result = sort_val(args.val_dir, args.ground_truth, args.synsets, args.out, meter.update)
    if args.json:
        print_json("val-sort", result.record())
    else:
        print(summary(result))
    return EXIT_OK
