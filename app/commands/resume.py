"""``clusterdeck resume``: submit again the steps of a run that failed or were cancelled."""

from __future__ import annotations

import argparse

from clusterdeck.app.commands.base import Subparsers, open_deck, print_json, scheduler_warnings
from clusterdeck.app.exitcodes import EXIT_OK

NAME = "resume"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="re-run what failed or was cancelled")
    s.add_argument("run")
    s.add_argument("--json", action="store_true")
    return s


def run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        paths = deck.resolve(args.run)
        with scheduler_warnings():
            resumed = deck.resume(paths)
        if args.json:
            print_json("run-resume", {**deck.view(paths).to_json(), "resumed": resumed})
            return EXIT_OK
    if not resumed:
        print(f"run {paths.run_id}: every step completed; nothing to resume")
    else:
        print(f"run {paths.run_id}: resubmitted")
    return EXIT_OK
