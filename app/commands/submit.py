"""``clusterdeck submit``: a run from a spec file, ``--set`` overrides on top; ``--wait`` follows it to its end."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clusterdeck.app.commands.base import Subparsers, open_deck, print_json, scheduler_warnings
from clusterdeck.app.exitcodes import EXIT_OK, exit_for

if TYPE_CHECKING:
    from clusterdeck.jobs.status import RunView

NAME = "submit"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="submit a run from a spec")
    s.add_argument(
        "spec", type=Path, help="spec file (TOML), or a template's name (yours, then built-in); - reads standard input"
    )
    s.add_argument("--spec-source", help=argparse.SUPPRESS)  # what problems call a spec sent on stdin
    s.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key (value parsed as TOML), e.g. --set shard.seed=3",
    )
    s.add_argument("--executor", choices=["local", "slurm"])
    s.add_argument("--wait", action="store_true", help="wait for the run to end; exit 0 done, 1 failed")
    s.add_argument("--json", action="store_true")
    return s


def spec_path(given: Path) -> Path:
    """``given``, or, when no such file exists and it is a bare name, the template of that name (the user's
    first, then the built-in ones): ``clusterdeck submit sample-shards`` wherever clusterdeck is installed."""
    if str(given) == "-" or given.exists() or given.parent != Path("."):
        return given
    from clusterdeck.jobs.templates import list_templates

    name = given.name.removesuffix(".toml")
    return next((t.path for t in list_templates() if t.name == name), given)


def run(args: argparse.Namespace) -> int:
    from clusterdeck.jobs.specfile import apply_overrides, read_table
    from clusterdeck.jobs.submit import wait_run

    overrides = list(args.overrides) + ([f'cluster.executor="{args.executor}"'] if args.executor else [])
    spec = spec_path(args.spec)
    source = args.spec_source or ("<stdin>" if str(spec) == "-" else str(spec))
    table = apply_overrides(read_table(spec), overrides)
    with open_deck(args) as deck:
        with scheduler_warnings():
            paths = deck.submit(table, source)
        view = deck.view(paths)
        if not args.json:
            print(f"submitted run {paths.run_id} ({view.name}) to {view.executor}: {paths.root}", flush=True)
        if not args.wait:
            if args.json:
                print_json("run-view", view.to_json())
            return EXIT_OK
        view = wait_run(paths, on_update=None if args.json else _progress_printer(), view_of=deck.view)
    if args.json:
        print_json("run-view", view.to_json())
    else:
        print(f"run {view.run_id} {view.state}")
        _print_failures(view)
    return exit_for(view.state)


def _progress_printer() -> Callable[[RunView], None]:
    from clusterdeck.jobs.steps import registry

    seen: dict[str, str] = {}

    def show(view: RunView) -> None:
        for step in view.steps:
            line = f"{step.name}: {step.state}"
            kind = registry.find(step.name)
            for part in step.parts:
                if kind is not None and (text := kind.progress_text(part.progress)):
                    line += f" [{part.part} {text}]"
            if seen.get(step.name) != line:
                seen[step.name] = line
                print(line, flush=True)

    return show


def _print_failures(view: RunView) -> None:
    for step in view.steps:
        for part in step.parts:
            if part.state != "COMPLETED" and part.error:
                print(f"  {step.name} {part.part}: {part.state}: {part.error}", file=sys.stderr)
