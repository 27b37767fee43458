"""``clusterdeck show``: a run's state, steps, parts, attempts and outputs; exits with the run's code once it ended."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from clusterdeck.app.commands.base import Subparsers, open_deck, print_json
from clusterdeck.app.exitcodes import EXIT_OK, exit_for
from clusterdeck.app.formats import elapsed, queue_wait, when
from clusterdeck.app.table import print_table, table_lines

if TYPE_CHECKING:
    from clusterdeck.jobs.dispatch.base import QueueWait

NAME = "show"
LOCAL_ONLY = False

PART_WIDTHS = (8, 10, 16, 15, 10)
"""Part, state, ``job ID``, ``node NAME``, ``exit CODE``: at least this wide, so that steps line up."""
START_WIDTHS = (3, 8, 10, 16, 15, 16)
"""Attempt, part, state, ``job ID``, ``node NAME``, start time: the same for the list of attempts."""


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="a run's state, steps, jobs and outputs")
    s.add_argument("run", help="run id, unique id prefix, or unique name")
    s.add_argument("--json", action="store_true")
    return s


def run(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        view = deck.view(deck.resolve(args.run))
    if args.json:
        print_json("run-view", view.to_json())
        return EXIT_OK
    print(f"run      {view.run_id}  {view.name}")
    print(f"state    {view.state}   executor {view.executor}   elapsed {elapsed(view.created_at, view.ended_at)}")
    print(f"path     {view.path}")
    if view.queue is not None:
        print(f"queue    {_wait(view.queue)}")
    for step in view.steps:
        print(f"step     {step.name}: {step.state} (attempt {step.attempt}, jobs {', '.join(step.job_ids)})")
        rows = []
        for part in step.parts:
            extra = "  ".join(f"{k}={v:g}" for k, v in part.progress.items())
            rows.append(
                [
                    part.part,
                    part.state,
                    f"job {part.job_id}",
                    f"node {part.node or '-'}",
                    f"exit {part.exit_code or '-'}",
                    extra,
                ]
            )
        for part, line in zip(step.parts, table_lines(rows, min_widths=PART_WIDTHS, gap=" ", indent="  "), strict=True):
            print(line)
            if part.queue is not None:
                print(f"           {_wait(part.queue)}")
            if part.error and part.state != "COMPLETED" and (part.queue is None or part.error != part.queue.reason):
                print(f"           {part.error}")
        if len(step.attempts) > 1 or any(p.history for a in step.attempts for p in a.parts):
            _print_attempts(step)
    for name, where in view.outputs.items():
        for key, value in where.items():
            print(f"output   {name}.{key}: {value}")
    for key, value in view.from_config.items():
        print(f"default  {key} = {value!r} (from your config)")
    return exit_for(view.state) if view.ended else EXIT_OK


def _wait(queue: QueueWait) -> str:
    """``Priority: waiting behind jobs of higher priority; start unknown`` (a reason without words: said once)."""
    words = queue_wait(queue.text, queue.expected_start)
    return f"{queue.reason}: {words}" if queue.reason and queue.reason != queue.text else words


def _print_attempts(step: Any) -> None:
    """Every start of every part: attempts (resume) and, within one, the scheduler's requeues."""
    from clusterdeck.jobs.tail.records import Progress

    print("  attempts:")
    rows = []
    for attempt in step.attempts:
        for part in attempt.parts:
            resumed_from = Progress.of(part.progress).resumed_from_step
            starts = [*part.history, {**vars(part), "resumed_from_step": resumed_from}]
            for start in starts:
                resumed = start.get("resumed_from_step")
                rows.append(
                    [
                        str(attempt.number),
                        part.part,
                        start["state"],
                        f"job {start['job_id']}",
                        f"node {start['node'] or '-'}",
                        when(start["started_at"]) if start["started_at"] else "-",
                        f"resumed from {'step ' + str(int(resumed)) if resumed is not None else 'the start'}",
                    ]
                )
    print_table(rows, min_widths=START_WIDTHS, gap=" ", indent="    ")
