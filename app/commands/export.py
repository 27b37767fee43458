"""``clusterdeck export``: the ``[export]`` settings from the command line, checked as a spec's are.

An option's problem is named as the option (``--size-gb``), a setting of the input as INPUT.
``--inspect`` prints the plan and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from clusterdeck.app.commands.base import Subparsers
from clusterdeck.app.exitcodes import EXIT_OK
from clusterdeck.app.progress import ByteMeter, add_quiet
from clusterdeck.jobs.errors import UserError

NAME = "export"
LOCAL_ONLY = True

OPTIONS = (
    "name", "size_gb", "samples", "val_fraction", "seed", "split", "image_size", "fit", "layout", "format",
    "decimals", "num_classes", "workers",
)  # fmt: skip


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(
        NAME, help="dense CSV matrices with .mtd files (or .npy) of a shard set or npz batches, for SystemDS"
    )
    s.add_argument("input", type=Path, metavar="INPUT", help="a shard set (with index.json), npz or CIFAR batches")
    s.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the files go")
    s.add_argument("--name", help="first part of every file name (default imagenet)")
    size = s.add_mutually_exclusive_group(required=True)
    size.add_argument("--size-gb", type=float, metavar="X", help="the four files together come to about X GB")
    size.add_argument("--samples", type=int, metavar="N", help="export N samples, train and val together")
    s.add_argument("--val-fraction", type=float, metavar="F", help="share of the samples in the val files (0.2)")
    s.add_argument("--seed", type=int, help="seed of the choice, order and split of the samples (0)")
    s.add_argument("--split", help="the input's part to take samples from: train (default), val or all")
    s.add_argument("--image-size", type=int, metavar="S", help="rows hold S×S×3 values (64)")
    s.add_argument("--fit", help="squash (default: resize whole images) or crop (their centre square)")
    s.add_argument("--layout", help="chw (default: colour planes, as SystemDS conv2d) or hwc (r,g,b per pixel)")
    s.add_argument("--format", help="csv (default, with .mtd files) or npy (float32 pixels, uint8 labels)")
    s.add_argument("--decimals", type=int, metavar="D", help="CSV digits after the point (6)")
    s.add_argument("--num-classes", type=int, metavar="K", help="one-hot width (default: the input's classes)")
    s.add_argument("--workers", help="processes decoding shard images (default auto: this machine's CPUs)")
    s.add_argument(
        "--overwrite", action="store_true", help="replace files of the same names once the new ones are done"
    )
    s.add_argument("--inspect", action="store_true", help="show what would be written; write nothing")
    s.add_argument("--json", action="store_true", help="print the plan (and the result) as JSON")
    add_quiet(s)
    return s


def option(name: str) -> str:
    """How the command line spells the spec key ``name``."""
    return "INPUT" if name == "input" else "--" + name.replace("_", "-")


def export_spec(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from clusterdeck.jobs.spec import error_items
    from clusterdeck.jobs.steps.export_spec import ExportSpec

    table: dict[str, Any] = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    if isinstance(table.get("workers"), str) and table["workers"].isdigit():
        table["workers"] = int(table["workers"])
    table.update(input=args.input, out=args.out, overwrite=args.overwrite)
    try:
        return ExportSpec.model_validate(table)
    except ValidationError as exc:
        problems = []
        for key, text in error_items(exc, ExportSpec):
            if key:
                problems.append(f"{option(key)}: {text}")
            else:
                problems.append(text.replace("size_gb", "--size-gb").replace("samples", "--samples"))
        raise UserError(*problems) from None


def run(args: argparse.Namespace) -> int:
    from clusterdeck.app.render.plan import render
    from clusterdeck.jobs.export.plan import check_outputs, describe, plan_export
    from clusterdeck.jobs.export.step import export
    from clusterdeck.jobs.protocol import stamp

    spec = export_spec(args)
    if args.inspect:
        plan = plan_export(spec, spec.input, option)
        print(json.dumps(stamp("export-plan", describe(plan)), indent=2) if args.json else render(plan))
        try:
            check_outputs(plan, option)
        except UserError as exc:  # the plan is still worth seeing; writing it would be refused
            print(f"clusterdeck: warning: {exc}", file=sys.stderr)
        return EXIT_OK
    meter = ByteMeter("export", unit="samples", quiet=args.quiet)

    def progress(p: dict[str, Any]) -> None:
        meter.update(p["samples_done"], p["samples_total"])

    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    with meter:
        plan, result = export(spec, spec.input, key=option, say=say, show_plan=render, on_progress=progress)
    if args.json:
        result_doc = {**describe(plan), "written": result.files, "seconds": round(result.seconds, 1)}
        print(json.dumps(stamp("export-result", result_doc), indent=2))
    return EXIT_OK
