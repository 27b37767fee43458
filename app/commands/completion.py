"""``clusterdeck completion SHELL``: the script that makes TAB complete commands, options, run ids and names,
and templates (``app.completion``)."""

from __future__ import annotations

import argparse

from clusterdeck.app.commands.base import Subparsers
from clusterdeck.app.exitcodes import EXIT_OK

NAME = "completion"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(
        NAME,
        help='print the shell completion script: eval "$(clusterdeck completion bash)" in ~/.bashrc',
    )
    s.add_argument("shell", choices=("bash", "zsh", "fish"))
    return s


def run(args: argparse.Namespace) -> int:
    from clusterdeck.app.completion import script

    print(script(args.shell))
    return EXIT_OK
