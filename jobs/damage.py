"""Damaged run records: a file of a run directory that is not what it should be, named with what is wrong.

Run records (``run.json``, ``spec.json``, status files) are written by atomic rename, so a
reader never meets half of one: a record that does not parse was damaged afterwards (a full
disk or a crash on the filesystem, a hand edit, another program's file). Readers say which
file and why, in one line, and never repair or rewrite it: the user decides what to keep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import ValidationError

from clusterdeck.jobs.errors import UserError


class DamagedRecord(UserError, ValueError):
    """A record that cannot be read as what it should be: exit code 2, the file named.

    Also a ``ValueError``, as a record that does not parse always was, so readers that pass
    over unreadable records (a run's name while resolving an address) still do.
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def within(self, root: Path) -> str:
        """The problem with the file named from ``root`` (a run directory): ``run.json: truncated JSON …``."""
        try:
            name = str(self.path.relative_to(root))
        except ValueError:
            name = str(self.path)
        return f"{name}: {self.problem}"


def read_record(path: Path) -> Any:
    """The JSON value in ``path``; ``DamagedRecord`` saying why when there is none. A missing file is left to
    the caller (``FileNotFoundError``): whether that is damage depends on the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DamagedRecord(path, f"cannot be read ({exc.strerror or exc})") from None
    problem = json_problem(data)
    if problem is None:
        try:
            return json.loads(data)
        except ValueError as exc:  # what the check above let through (it is stricter than json): said as json says
            problem = f"not JSON ({exc})"
    raise DamagedRecord(path, problem)


def json_problem(data: bytes) -> str | None:
    """What keeps ``data`` from being a JSON document, in a few words; None when it is one."""
    if not data.strip():
        return "empty file" if not data else "empty (only white space)"
    if b"\0" in data:
        return "binary data (it holds NUL bytes), not JSON"
    try:
        pydantic_core.from_json(data)
    except ValueError as exc:
        text = str(exc)
        if text.startswith("EOF while parsing"):
            where = text.partition(" at ")[2]
            return f"truncated JSON (it ends at {where})" if where else "truncated JSON"
        if "unicode" in text or "utf-8" in text.lower():
            return f"not UTF-8 text ({text})"
        return f"not JSON ({text})"
    return None


def model_problem(what: str, exc: ValidationError) -> str:
    """``not a run record (steps: required key is missing; and 2 more)``: the first mismatch of a foreign record."""
    errors = exc.errors()
    first = errors[0]
    key = ".".join(str(p) for p in first["loc"])
    text = "required key is missing" if first["type"] == "missing" else first["msg"]
    more = f"; and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"not {what} ({f'{key}: ' if key else ''}{text}{more})"
