"""``clusterdeck ls``: every run of the runs root, one line each (``--json``: the run-list document)."""

from __future__ import annotations

import argparse

from clusterdeck.app.commands.base import Subparsers, open_deck, print_json
from clusterdeck.app.exitcodes import EXIT_OK
from clusterdeck.app.formats import elapsed, queue_wait, when
from clusterdeck.app.table import print_table

NAME = "ls"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="list runs")
    s.add_argument("--json", action="store_true")
    return s


def run(args: argparse.Namespace) -> int:
    from clusterdeck.jobs.runindex import paused_gc

    with paused_gc():  # a listing of 100,000 runs makes 100,000 rows and no cycle
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        entries, where = deck.listing(), deck.where
    if args.json:
        print_json("run-list", {"runs": entries})
        return EXIT_OK
    if not entries:
        print(f"no runs under {where}")
        return EXIT_OK
    rows = [["ID", "NAME", "STATE", "STEPS", "CREATED", "ELAPSED", "QUEUE"]]
    for e in entries:
        steps = " ".join([f"{step}:{state}" for step, state in e["steps"].items()])
        created = e["created_at"]
        if e.get("damaged"):  # the file and what is wrong, where the steps would be
            rows.append([e["run_id"], e["name"] or "-", e["state"], e["damaged"], when(created), "-", ""])
            continue
        queue = e.get("queue")  # a login node's older clusterdeck lists none
        wait = queue_wait(queue["text"], queue["expected_start"]) if queue else ""
        rows.append([e["run_id"], e["name"], e["state"], steps, when(created), elapsed(created, e["ended_at"]), wait])
    print_table(rows)
    return EXIT_OK
