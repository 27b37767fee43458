"""``clusterdeck cancel``: cancel a run's jobs (the run then ends CANCELLED; ``resume`` takes it up again)."""

from __future__ import annotations

import argparse

from clusterdeck.app.commands.base import Subparsers, open_deck, print_json
from clusterdeck.app.exitcodes import EXIT_OK

NAME = "cancel"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="cancel a run's jobs")
    s.add_argument("run")
    s.add_argument("--json", action="store_true")
    return s


def run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        view = deck.cancel(deck.resolve(args.run))
    if args.json:
        print_json("run-view", view.to_json())
    else:
        print(f"run {view.run_id}: cancel requested" if not view.ended else f"run {view.run_id} is {view.state}")
    return EXIT_OK
