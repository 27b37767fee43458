"""``clusterdeck``: with a COMMAND, the headless CLI; without one, the Textual app (``app.tui``).

Each command is a module of ``app.commands``, its arguments beside its handler; ``COMMANDS`` lists them in
the order ``--help`` shows them. This module builds the parser from that list, dispatches, and turns errors
into exit codes (``app.exitcodes``): a ``UserError`` is printed without a traceback.

Every document ``--json`` prints carries ``schema`` and ``clusterdeck`` (``jobs.protocol``): the
remote deck reads them on the laptop from another installation.

``--host NAME`` does the same on a cluster's login node over SSH (``app.remote``): every command that
works on runs goes through a ``Deck``, this machine's or the login node's; the commands on this
machine's files (``LOCAL_ONLY``) are refused.

Only light modules are imported at start; torch and friends load inside payloads.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from clusterdeck.app.commands import (
    cancel,
    completion,
    demo,
    diff,
    export,
    inspect,
    logs,
    ls,
    metrics,
    resume,
    sample_data,
    show,
    stage,
    submit,
    trust,
    val_sort,
    version,
    watch,
)
from clusterdeck.app.commands.base import Command, open_deck
from clusterdeck.app.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from clusterdeck.jobs.errors import UserError

COMMANDS: tuple[Command, ...] = (
    submit, ls, show, diff, logs, metrics, watch, cancel, resume,
    stage, sample_data, val_sort, inspect, export, demo, version, trust, completion,
)  # fmt: skip
"""Every command, in the order ``clusterdeck --help`` lists them."""


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (not at every start)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from clusterdeck.jobs.protocol import version

        print(f"clusterdeck {version()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"clusterdeck: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="clusterdeck", description="Shard, stage and train image models on SLURM clusters.")
    p.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    p.add_argument("--runs-root", type=Path, help="runs root (default $CLUSTERDECK_HOME/runs or ~/.clusterdeck/runs)")
    p.add_argument(
        "--host",
        metavar="NAME",
        help="work on a cluster's login node over SSH: a profile of ~/.config/clusterdeck/config.toml, "
        "an ~/.ssh/config alias or a hostname (--runs-root is then a path there)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        _globals_after(command.add_parser(sub))
    return p


def _globals_after(s: argparse.ArgumentParser) -> None:
    """``--runs-root`` and ``--host`` after the command too (``clusterdeck ls --host x``); given there, they win."""
    s.add_argument("--runs-root", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.add_argument("--host", metavar="NAME", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (app.completion); answered, it exits
        from clusterdeck.app.completion import complete

        complete(parser)
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            return run_app(args)
        command = next(c for c in COMMANDS if args.command == c.NAME)
        if args.host and command.LOCAL_ONLY:
            raise UserError(f"--host: `{args.command}` works on this machine's files; run it on the cluster itself")
        return command.run(args)
    except UserError as exc:
        for problem in exc.problems:
            print(f"clusterdeck: error: {problem}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `clusterdeck logs RUN | head`: the reader left; say nothing more (before
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # ConnectionError, its base class)
        return EXIT_OK
    except (ConnectionError, TimeoutError) as exc:  # remote mode: the network, not the input
        print(f"clusterdeck: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run_app(args: argparse.Namespace) -> int:
    """No command: the Textual app, on the deck of ``--runs-root`` / ``--host``."""
    from clusterdeck.app.tui.app import make_app

    with open_deck(args) as deck:
        make_app(deck=deck).run()
    return EXIT_OK


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
