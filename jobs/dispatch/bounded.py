"""Scheduler commands run side by side under one deadline, for the checks that must not make a command slow.

Written here rather than with ``subprocess.run(timeout=…)``: that kills the command it started but then waits for
its output pipes to close, which a site's wrapper script (``sinfo`` as a shell script calling the real one) keeps
open in a grandchild for as long as the slow call lasts. Each command here gets a session of its own, and the whole
session is killed at the deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """What one command said: its output when it exited 0, else why there is none."""

    out: str | None
    error: str = ""
    timed_out: bool = False


def ask_all(commands: list[list[str]], timeout_s: float) -> list[Answer]:
    """Runs ``commands`` at once and waits at most ``timeout_s`` for all of them together; an answer per command."""
    started = [_start(argv) for argv in commands]
    deadline = time.monotonic() + timeout_s
    answers = []
    for argv, proc in zip(commands, started, strict=True):
        answers.append(proc if isinstance(proc, Answer) else _collect(argv[0], proc, deadline, timeout_s))
    return answers


def _start(argv: list[str]) -> subprocess.Popen[str] | Answer:
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", start_new_session=True,
        )  # fmt: skip
    except OSError as exc:  # not on PATH, not executable
        return Answer(None, f"{argv[0]}: {exc.strerror or exc}")


def _collect(name: str, proc: subprocess.Popen[str], deadline: float, timeout_s: float) -> Answer:
    try:
        out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Answer(None, f"{name} did not answer in {timeout_s:g} s", timed_out=True)
    if proc.returncode != 0:
        first = next((line.strip() for line in err.splitlines() if line.strip()), "")
        return Answer(None, first or f"{name} exited with {proc.returncode}")
    return Answer(out)
