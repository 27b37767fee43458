"""``~/.ssh/config`` as OpenSSH reads it: ``Include`` spliced in, then looked up with paramiko's ``SSHConfig``.

paramiko parses Host and Match blocks but keeps ``Include`` as an ordinary key and reads
nothing (paramiko/paramiko#1044, #1609; the pull requests adding it, #872, #2416, #2663,
were never merged), while HPC sites hand out ``Include ~/.ssh/config.d/*``. So the text is
put together here, as OpenSSH's readconf.c does, and only then given to paramiko:

- each argument of ``Include`` is a glob, ``~`` expanded, relative to ``~/.ssh``; the files
  it matches are read in sorted order, a glob matching nothing is skipped (as ssh does);
- an included file may include others, at most 16 deep (OpenSSH's limit, which also stops
  a file that includes itself);
- an ``Include`` inside a Host or Match block applies only where that block does: a Host or
  Match line in the included file is made to require the enclosing block's condition too
  (as a ``Match`` with both), and after each included file the enclosing block goes on.

The rest (which options exist, the first value winning, tokens) is paramiko's.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from clusterdeck.jobs.errors import UserError

if TYPE_CHECKING:
    from paramiko import SSHConfig

MAX_DEPTH = 16
"""OpenSSH's READCONF_MAX_DEPTH."""
_LINE = re.compile(r"^\s*(\w+)(?:\s*=\s*|\s+)(.*?)\s*$")


def ssh_dir() -> Path:
    return Path("~/.ssh").expanduser()


def read_config(path: Path) -> SSHConfig:
    """The parsed config at ``path`` (an empty one if there is none), every ``Include`` spliced in."""
    from paramiko import SSHConfig

    if not path.is_file():
        return SSHConfig()
    text = "\n".join(splice(path))
    try:
        return SSHConfig.from_text(text)
    except Exception as exc:  # paramiko's parser: a malformed Host or Match line
        raise UserError(f"{path}: {exc}") from None


def lookup(host: str, path: Path) -> dict[str, object]:
    """What the config at ``path`` says of ``host``, keys in lower case (paramiko's ``lookup``)."""
    config = read_config(path)
    try:
        return dict(config.lookup(host))
    except Exception as exc:  # a Match exec without invoke installed, a canonicalisation failure
        raise UserError(f"{path}: cannot look up {host!r}: {exc}") from None


def splice(path: Path, condition: list[str] | None = None, depth: int = 0) -> list[str]:
    """The lines of ``path`` with every Include replaced by the files it names.

    ``condition`` is the enclosing block's, as Match criteria (``originalhost PATTERNS`` …):
    empty at the top of the user's config, where every host matches.
    """
    if depth > MAX_DEPTH:
        raise UserError(f"{path}: Include nested more than {MAX_DEPTH} deep (does a file include itself?)")
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    outer = condition or []
    current = outer  # the condition of the block the next line belongs to
    header = _header(outer)
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        if match is None:
            raise UserError(f"{path}:{number}: cannot parse {stripped!r}")
        key, value = match.group(1).lower(), match.group(2)
        if key in ("host", "match"):
            current = [*outer, *_criteria(key, value, path, number)]
            header = _header(current) if outer else stripped  # unconditional: the user's own line, as written
            out.append(header)
        elif key == "include":
            included = _included(value, path, number)
            for file in included:  # each file may open blocks of its own: after it, this block goes on
                out += splice(file, current, depth + 1)
                out.append(header)
        else:
            out.append(stripped)
    return out


def _criteria(key: str, value: str, path: Path, number: int) -> list[str]:
    """A Host or Match line's condition as Match criteria, so that it can be joined to an enclosing one."""
    try:
        words = shlex.split(value)
    except ValueError:
        raise UserError(f"{path}:{number}: cannot parse {key} {value!r}") from None
    if not words:
        raise UserError(f"{path}:{number}: {key} names nothing")
    if key == "host":  # Host's patterns, negations included, are originalhost's (paramiko matches both alike)
        return ["originalhost", ",".join(words)]
    if [w.lower() for w in words] == ["all"]:
        return []
    return [shlex.quote(w) for w in words]


def _header(criteria: list[str]) -> str:
    """The block line for ``criteria``: ``Host *`` when there are none (every host)."""
    return "Match " + " ".join(criteria) if criteria else "Host *"


def _included(value: str, path: Path, number: int) -> list[Path]:
    """The files an Include line names, in OpenSSH's order: each argument's glob matches, sorted."""
    try:
        patterns = shlex.split(value)
    except ValueError:
        raise UserError(f"{path}:{number}: cannot parse Include {value!r}") from None
    files: list[Path] = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            pattern = str(ssh_dir() / pattern)
        files += [Path(p) for p in sorted(glob.glob(pattern)) if os.path.isfile(p)]
    return files
