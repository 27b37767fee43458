"""``clusterdeck export``: the ``[export]`` settings from the command line, checked as a spec's are.

An option's problem is named as the option (``--size-gb``), a setting of the input as INPUT.
``--inspect`` prints the plan and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobs.errors import UserError

OPTIONS = (
    "name", "size_gb", "samples", "val_fraction", "seed", "split", "image_size", "fit", "layout", "format",
    "decimals", "num_classes", "workers",
)  # fmt: skip


def option(name: str) -> str:
    """How the command line spells the spec key ``name``."""
    return "INPUT" if name == "input" else "--" + name.replace("_", "-")


def export_spec(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from jobs.spec import error_items
    from jobs.steps.export_spec import ExportSpec

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


def run_export(args: argparse.Namespace) -> int:
    from app.render.plan import render
    from jobs.export.plan import check_outputs, describe, plan_export
    from jobs.export.step import export
    from jobs.protocol import stamp

    spec = export_spec(args)
    if args.inspect:
        plan = plan_export(spec, spec.input, option)
        print(json.dumps(stamp("export-plan", describe(plan)), indent=2) if args.json else render(plan))
        try:
            check_outputs(plan, option)
        except UserError as exc:  # the plan is still worth seeing; writing it would be refused
            print(f"clusterdeck: warning: {exc}", file=sys.stderr)
        return 0
    tty = sys.stderr.isatty()

    def progress(p: dict[str, Any]) -> None:
        done = f"{p['samples_done']:,}/{p['samples_total']:,} samples"
        line = f"  {done}  {p['bytes_written'] / 1e9:.2f} GB  {p['mb_s']:.0f} MB/s"
        print(f"\r{line:<70}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    plan, result = export(spec, spec.input, key=option, say=say, show_plan=render, on_progress=progress)
    if tty:
        print(file=sys.stderr)
    if args.json:
        result_doc = {**describe(plan), "written": result.files, "seconds": round(result.seconds, 1)}
        print(json.dumps(stamp("export-result", result_doc), indent=2))
    return 0
