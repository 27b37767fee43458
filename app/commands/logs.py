"""``clusterdeck logs``: a run's job logs, every job, attempt and rank; ``-f`` follows them until the run ends."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from clusterdeck.app.commands.base import Subparsers, _natural, open_deck
from clusterdeck.app.exitcodes import EXIT_OK, exit_for
from clusterdeck.app.follow import follow

if TYPE_CHECKING:
    from clusterdeck.jobs.deck.base import Deck
    from clusterdeck.jobs.rundir import RunPaths

NAME = "logs"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="print a run's job logs (every job, attempt and rank)")
    s.add_argument("run")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    s.add_argument("--rank", type=_natural, help="only this rank's logs")
    s.add_argument("--err", action="store_true", help="stderr instead of stdout")
    return s


def run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        return print_logs(args, deck, deck.resolve(args.run))


def print_logs(args: argparse.Namespace, deck: Deck, paths: RunPaths) -> int:
    from clusterdeck.jobs.tail.run import LogFile, RunLogs

    logs = RunLogs(paths, deck.files, err=args.err, rank=args.rank)
    shown: list[LogFile | None] = [None]

    def poll(final: bool) -> bool:
        lines = logs.poll(final)
        for file, line in lines:
            if file != shown[0]:
                print(f"==> job {file.job_id} rank {file.rank} ({file.stream}) <==")
                shown[0] = file
            print(line)
        sys.stdout.flush()
        return bool(lines) or logs.more

    view = follow(deck, paths, poll, keep_going=args.follow)
    logs.close()
    return exit_for(view.state) if view else EXIT_OK
