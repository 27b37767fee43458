"""``clusterdeck watch``: a live view of a run until it ends (``app.watch``); exits with the run's code."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from clusterdeck.app.commands.base import Subparsers, open_deck
from clusterdeck.app.exitcodes import exit_for
from clusterdeck.app.follow import follow

if TYPE_CHECKING:
    from clusterdeck.jobs.deck.base import Deck
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.status import RunView

NAME = "watch"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="a live view of a run until it ends; exits with the run's code")
    s.add_argument("run")
    return s


def run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        return watch_run(args, deck, deck.resolve(args.run))


def watch_run(args: argparse.Namespace, deck: Deck, paths: RunPaths) -> int:
    from clusterdeck.app.watch import LineReporter, Screen
    from clusterdeck.jobs.tail.live import LiveRun
    from clusterdeck.jobs.tail.run import RunMetrics

    metrics, live = RunMetrics(paths, deck.files), LiveRun()
    current: list[RunView] = []  # follow() gives the first view before the first poll
    out: LineReporter | Screen = Screen() if sys.stdout.isatty() else LineReporter(sys.stdout)

    def poll(final: bool) -> bool:
        records = metrics.poll(final)
        for raw in records:
            record = live.add(raw)
            if record is not None:  # None: a kind or major this clusterdeck does not read
                out.record(record, current[-1])
        out.show(current[-1], live)
        return bool(records) or metrics.more

    def on_view(view: RunView) -> None:
        current[:] = [view]
        out.show(view, live)

    with out:
        follow(deck, paths, poll, keep_going=True, on_view=on_view)
    metrics.close()
    return exit_for(current[-1].state)
