"""``clusterdeck version``: this clusterdeck's version and JSON schemas; with ``--host``, the login node's too."""

from __future__ import annotations

import argparse
from typing import Any

from clusterdeck.app.commands.base import Subparsers, open_deck, print_json
from clusterdeck.app.exitcodes import EXIT_OK

NAME = "version"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="this clusterdeck's version and JSON schemas (with --host: the login node's)")
    s.add_argument("--json", action="store_true")
    return s


def run(args: argparse.Namespace) -> int:
    """This clusterdeck's version and schemas; with ``--host``, the login node's too, once checked against them."""
    from clusterdeck.jobs.protocol import SCHEMAS, version, version_doc

    peer: dict[str, Any] = {}
    if args.host:
        with open_deck(args) as deck:
            peer = deck.check_version()  # type: ignore[attr-defined]  # --host: an SshDeck
    if args.json:
        doc = version_doc() | ({"login_node": {"host": args.host, **peer}} if args.host else {})
        print_json("version", doc)
        return EXIT_OK
    print(f"clusterdeck {version()} (JSON {', '.join(f'{k}/{v}' for k, v in SCHEMAS.items())})")
    if args.host:
        print(f"{args.host}: clusterdeck {peer.get('clusterdeck', '?')}, the same JSON schemas")
    return EXIT_OK
