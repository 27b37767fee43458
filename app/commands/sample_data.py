"""``clusterdeck sample-data``: a small ILSVRC2012-shaped dataset whose classes are learnable (``jobs.sample_data``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clusterdeck.app.commands.base import Subparsers, _positive
from clusterdeck.app.exitcodes import EXIT_OK

NAME = "sample-data"
LOCAL_ONLY = True


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="write a small ILSVRC2012-shaped dataset")
    s.add_argument("dir", type=Path)
    s.add_argument("--classes", type=_positive, default=10)
    s.add_argument("--train-per-class", type=_positive, default=40)
    s.add_argument("--val-per-class", type=_positive, default=10)
    s.add_argument("--seed", type=int, default=0)
    return s


def run(args: argparse.Namespace) -> int:
    from clusterdeck.jobs.sample_data import make_sample_data

    data = make_sample_data(args.dir, args.classes, args.train_per_class, args.val_per_class, args.seed)
    print(
        f"wrote {args.classes} classes: {data.train} ({args.classes * args.train_per_class} images), "
        f"{data.val} ({args.classes * args.val_per_class} images), {data.ground_truth.name}, {data.synsets.name}"
    )
    return EXIT_OK
