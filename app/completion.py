"""Shell completion (bash, zsh, fish) by argcomplete: the shell runs ``clusterdeck`` with argcomplete's variables
set, and ``main`` hands its parser to ``complete`` before anything else happens.

argcomplete, not a static script (shtab), because run ids and names change with every submit: they are read
when TAB is pressed, from the runs root's directory names and its index of ended runs, never from each run's
record, so an answer stays fast on a root of 10,000 runs. Nothing heavy is imported on this path.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

SHELLS = ("bash", "zsh", "fish")
PROGRAMS = ["clusterdeck", "cdeck"]


def script(shell: str) -> str:
    """What ``clusterdeck completion SHELL`` prints: the shell's hook for both program names."""
    import argcomplete

    return str(argcomplete.shellcode(PROGRAMS, shell=shell))


def runs_root_of(parsed: argparse.Namespace) -> Path:
    given = getattr(parsed, "runs_root", None)
    if given is not None:
        return Path(os.path.expanduser(str(given)))
    from clusterdeck.jobs.runs import default_runs_root

    return default_runs_root()


def run_words(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """Run ids and names that start with ``prefix`` (none over ``--host``: that would need a connection)."""
    if getattr(parsed_args, "host", None):
        return []
    try:
        root = runs_root_of(parsed_args)  # a bad [defaults] runs_root: no words, not a traceback on the line
    except Exception:
        return []
    return sorted(w for w in _run_words(root) if w.startswith(prefix))


def _run_words(root: Path) -> set[str]:
    """The run directories' names (ids) and the names of the ended runs the index holds (a live run's name is in
    its record, which is not read here: a root has few live runs, and its id completes)."""
    from clusterdeck.jobs.runindex import RunsIndex, run_directories

    try:
        words = set(run_directories(root))
        index = RunsIndex(root)
        index.refresh()
    except Exception:  # a TAB never prints a traceback into the command line: no words
        return set()
    words.update(entry["name"] for d, (_, entry) in index.ended.items() if d in words and entry.get("name"))
    return words


def spec_words(prefix: str, **_: Any) -> list[str]:
    """Spec files (``*.toml``) and directories under ``prefix``, and the templates' names."""
    from clusterdeck.jobs.templates import list_templates

    folder, _, start = prefix.rpartition("/")
    base = Path(folder or ".")
    files: list[str] = []
    try:
        for entry in os.scandir(base):
            if entry.name.startswith(start) and (entry.is_dir() or entry.name.endswith(".toml")):
                name = f"{folder}/{entry.name}" if folder else entry.name
                files.append(name + "/" if entry.is_dir() else name)
    except OSError:
        pass
    return sorted(files) + sorted(t.name for t in list_templates() if t.name.startswith(prefix))


def attach(parser: argparse.ArgumentParser) -> None:
    """Sets the completers of every run and spec argument of ``parser``'s commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for arg in sub._actions:
                    if arg.dest in ("run", "runs"):
                        arg.completer = run_words  # type: ignore[attr-defined]
                    elif arg.dest == "spec":
                        arg.completer = spec_words  # type: ignore[attr-defined]


def complete(parser: argparse.ArgumentParser) -> None:
    """Answers the shell and exits, when the shell is asking (argcomplete's variables are set)."""
    import argcomplete

    class Finder(argcomplete.CompletionFinder):  # type: ignore[misc]
        def filter_completions(self, completions: list[str]) -> list[str]:
            """argcomplete's, in linear time: its own looks each word up in the list so far, which took 0.45 s
            for the 20,000 ids and names of a root of 10,000 runs (``bench/completion.py``)."""
            excluded = set(self.exclude or ())
            return [c for c in dict.fromkeys(completions) if c not in excluded]

    attach(parser)
    Finder()(parser, always_complete_options="long")
