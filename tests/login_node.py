"""The login node's clusterdeck for tests/test_protocol.py: this checkout's, as a newer or an older release speaks.

Run as the profile's ``command`` over the real sshd: ``python tests/login_node.py MODE LOG ARGS…``.
Every invocation appends its ARGS to LOG (how many times the deck asked what). MODE:

- ``newer``: this checkout's clusterdeck, its JSON grown as a newer release within the same
  majors would grow it: a field the laptop does not know in every record, a schema it has never heard of;
- ``major99``: a release whose documents are at major 99 (it says so in ``version --json``);
- ``before``: a release from before versioned JSON: it has no ``version`` command, argparse refuses it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RECORD_LISTS = ("runs", "steps", "parts", "attempts")
"""Keys whose lists hold records (objects with fixed fields); other objects in documents are maps keyed by data."""
EXTRA = {"added_by_a_newer_clusterdeck": {"nested": [1, "two", None]}}


def grow(doc: Any) -> Any:
    """``doc`` with a field this clusterdeck does not know in the document itself and in every record in it."""
    if isinstance(doc, dict):
        grown = {k: [grow(v) for v in value] if k in RECORD_LISTS and isinstance(value, list) else value
                 for k, value in doc.items()}  # fmt: skip
        return {**grown, **EXTRA}
    return doc


def main(mode: str, log: str, argv: list[str]) -> int:
    with open(log, "a") as f:
        f.write(shlex.join(argv) + "\n")
    if mode == "before" and argv[:1] == ["version"]:
        parser = argparse.ArgumentParser(prog="clusterdeck")
        parser.add_subparsers(dest="command", metavar="COMMAND").add_parser("ls")
        parser.parse_args(argv)  # exits 2: invalid choice
    from clusterdeck.jobs.protocol import SCHEMAS, stamp

    if mode == "major99" and argv[:1] == ["version"]:
        print(json.dumps(stamp("version", {"schemas": {name: 99 for name in SCHEMAS}}) | {"clusterdeck": "9.0.0"}))
        return 0
    from clusterdeck.app.cli import main as clusterdeck

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = clusterdeck(argv)
    text = out.getvalue()
    if mode == "newer" and text.strip():
        doc = grow(json.loads(text))
        if argv[:1] == ["version"]:
            doc |= {"clusterdeck": "0.99.0", "schemas": {**doc["schemas"], "run-graph": 1}}
        text = json.dumps(doc)
    sys.stdout.write(text)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
