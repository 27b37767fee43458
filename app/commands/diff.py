"""``clusterdeck diff``: how runs' specs differ, and their per-epoch loss, top-1 and top-5 side by side."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from clusterdeck.app.commands.base import Subparsers, open_deck, print_json
from clusterdeck.app.exitcodes import EXIT_OK
from clusterdeck.app.table import print_table

if TYPE_CHECKING:
    from clusterdeck.jobs.compare import Comparison

NAME = "diff"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="compare runs: how their specs differ, their per-epoch curves side by side")
    s.add_argument("runs", nargs="+", metavar="RUN", help="two or more runs: id, unique id prefix, or unique name")
    s.add_argument("--json", action="store_true")
    return s


def run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        comparison = deck.compare(args.runs)
    if args.json:
        print_json("run-diff", comparison.to_json())
    else:
        _print_comparison(comparison)
    return EXIT_OK


def _series(c: Comparison) -> list[tuple[str, str, str]]:
    """(key, title, format) of the per-epoch columns: loss, top-1 and top-5 where any run has them, then the figures
    a script logged itself (``clusterdeck.log_epoch(epoch=…, acc=…)``), by name."""
    from clusterdeck.jobs.compare import SERIES

    built_in = (("train_loss", "loss", "{:.4f}"), ("top1", "top-1", "{:.1%}"), ("top5", "top-5", "{:.1%}"))
    shown = [s for s in built_in if any(curves.get(s[0]) for curves in c.curves)]
    extra = sorted({key for curves in c.curves for key, points in curves.items() if points} - set(SERIES))
    return shown + [(key, key, "{:.4g}") for key in extra]


def _print_comparison(c: Comparison) -> None:
    """Who is who, the spec keys that differ, then the per-epoch figures of every run side by side."""
    from clusterdeck.jobs.compare import format_value, letter

    columns = [letter(i) for i in range(len(c.run_ids))]
    print_table([[col, c.run_ids[i], c.names[i], c.states[i]] for i, col in enumerate(columns)])
    print()
    if c.differences:
        print("spec differences")
        print_table([["KEY", *columns], *([key, *map(format_value, values)] for key, values in c.differences)])
    else:
        print("the specs are the same")
    print()
    if not c.epochs:
        print("no training records yet in any of these runs")
        return
    series = _series(c)
    rows = [["EPOCH", *(f"{col} {title}" for col in columns for _, title, _ in series)]]
    for epoch in c.epochs:
        cells = [str(epoch)]
        for i in range(len(columns)):
            for key, _, fmt in series:
                value = c.value(i, key, epoch)
                cells.append(fmt.format(value) if value is not None else "-")
        rows.append(cells)
    print_table(rows, right=range(1, len(rows[0])))
    print()
    print("best top-1")
    best = []
    for i, col in enumerate(columns):
        top = c.best_top1(i)
        best.append([col, f"{top[1]:.1%} at epoch {top[0]}" if top else "-"])
    print_table(best, indent="  ")
