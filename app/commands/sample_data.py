"""``clusterdeck sample-data``: a small ILSVRC2012-shaped dataset whose classes are learnable (``jobs.sample_data``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clusterdeck.app.commands.base import Subparsers, _positive
from clusterdeck.app.exitcodes import EXIT_OK
from clusterdeck.app.progress import ByteMeter, add_quiet

NAME = "sample-data"
LOCAL_ONLY = True


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="write a small ILSVRC2012-shaped dataset")
    s.add_argument("dir", type=Path)
    s.add_argument("--classes", type=_positive, default=10)
    s.add_argument("--train-per-class", type=_positive, default=40)
    s.add_argument("--val-per-class", type=_positive, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--also",
        nargs="+",
        choices=ALSO,
        default=[],
        metavar="FORMAT",
        help=f"the same images also as: {', '.join(ALSO)} (CIFAR batches are generated images of their own)",
    )
    add_quiet(s)
    return s


ALSO = ("hf-parquet", "imagefolder-tar", "cifar")


def run(args: argparse.Namespace) -> int:
    from clusterdeck.jobs.sample_data import make_sample_data

    with ByteMeter("sample-data", unit="images", quiet=args.quiet) as meter:
        data = make_sample_data(
            args.dir, args.classes, args.train_per_class, args.val_per_class, args.seed, meter.update
        )
    print(
        f"wrote {args.classes} classes: {data.train} ({args.classes * args.train_per_class} images), "
        f"{data.val} ({args.classes * args.val_per_class} images), {data.ground_truth.name}, {data.synsets.name}"
    )
    if "hf-parquet" in args.also:
        from clusterdeck.jobs.sample_hf import make_hf_parquet

        print(f"wrote HuggingFace parquet: {make_hf_parquet(data, args.dir / 'hf', seed=args.seed).root}")
    if "imagefolder-tar" in args.also:
        from clusterdeck.jobs.sample_imagefolder_tar import make_imagefolder_tar

        tar = make_imagefolder_tar(data.train, args.dir / "train.tar.gz", prefix="train")
        print(f"wrote a gzipped tar of the train tree: {tar}")
    if "cifar" in args.also:
        from clusterdeck.jobs.sample_cifar import make_cifar

        per = max(args.train_per_class, 1)
        cifar = make_cifar(
            args.dir / "cifar", classes=10, per_class=per, test_per_class=args.val_per_class, seed=args.seed
        )
        print(f"wrote CIFAR-10 batches: {cifar.root}")
    return EXIT_OK
