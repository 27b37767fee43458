"""What a command module holds (``Command``), and what several commands share: the deck, JSON documents, numbers."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from clusterdeck.jobs.deck.base import Deck

Subparsers = argparse._SubParsersAction  # what ``add_subparsers`` returns: each command adds its parser to it


class Command(Protocol):
    """A module of ``app.commands``; ``app.cli.COMMANDS`` lists every one."""

    NAME: str
    """The command's word on the command line."""
    LOCAL_ONLY: bool
    """Works on this machine's files: refused with ``--host`` (run it on the cluster itself)."""

    def add_parser(self, sub: Subparsers) -> argparse.ArgumentParser:
        """Adds the command's parser, with its help and arguments, to ``clusterdeck``'s subcommands."""
        ...

    def run(self, args: argparse.Namespace) -> int:
        """Does what the parsed ``args`` ask; returns the exit code (``app.exitcodes``)."""
        ...


def open_deck(args: argparse.Namespace) -> Deck:
    """This machine's runs root, or (``--host``) the login node's, connected."""
    if args.host:
        from clusterdeck.app.remote import connect

        return connect(args.host, str(args.runs_root) if args.runs_root else None)
    from clusterdeck.jobs.deck.local import LocalDeck

    return LocalDeck(_root(args), root_given=args.runs_root is not None)


def _root(args: argparse.Namespace) -> Path:
    from clusterdeck.jobs.runs import default_runs_root

    return args.runs_root.expanduser() if args.runs_root else default_runs_root()


def print_json(schema: str, doc: dict[str, Any]) -> None:
    """``doc`` as the document ``schema`` of ``jobs.protocol``: stamped with its schema and this version."""
    from clusterdeck.jobs.protocol import stamp

    print(json.dumps(stamp(schema, doc), indent=2, sort_keys=True, default=str))


@contextlib.contextmanager
def scheduler_warnings() -> Iterator[None]:
    """Prints each ``SchedulerWarning`` of a submission (``Backend.preflight``: what the user may know better) as
    ``clusterdeck: warning: …`` on stderr once the block is over, failed or not; other warnings go on as they were."""
    from clusterdeck.jobs.dispatch.base import SchedulerWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SchedulerWarning)
            yield
    finally:  # the filters are back as they were: the others are shown as they would have been
        for w in caught:
            if issubclass(w.category, SchedulerWarning):
                print(f"clusterdeck: warning: {w.message}", file=sys.stderr, flush=True)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


# The argument types' names show in argparse's errors ("invalid _natural value: 'x'"): they stay as they were.


def _natural(text: str) -> int:
    """An argument that is a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    """An argument that is a whole number, 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
