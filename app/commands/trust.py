"""``clusterdeck --host NAME trust SHA256:…``: trust a login node's host key, once its fingerprint is checked."""

from __future__ import annotations

import argparse

from clusterdeck.app.commands.base import Subparsers
from clusterdeck.app.exitcodes import EXIT_OK
from clusterdeck.jobs.errors import UserError

NAME = "trust"
LOCAL_ONLY = False


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    s = sub.add_parser(NAME, help="with --host: trust the login node's host key, given its fingerprint")
    s.add_argument(
        "fingerprint", metavar="SHA256:…", help="the fingerprint the refusal showed, checked with the admins"
    )
    return s


def run(args: argparse.Namespace) -> int:
    if not args.host:
        raise UserError("trust: name the login node with --host NAME (clusterdeck --host NAME trust SHA256:…)")
    from clusterdeck.app.remote import trust

    print(trust(args.host, args.fingerprint))
    return EXIT_OK
