"""One task's run of a user's command: signals passed on, stderr both logged and remembered, the exit explained.

The command's stdout goes straight to the job's log. Its stderr passes through a thread that writes what comes as it
comes (a progress bar's ``\r`` updates too) and keeps the last few lines, so that a failure in ``show`` says what
the command said last. A process the command left behind may hold its stderr open: once the command has exited,
the reader is given a few seconds, then left to that process.
SIGUSR2 (SLURM's time-limit warning) and SIGTERM (scancel, preemption) are passed on to the command, which saves
its checkpoint and exits with ``clusterdeck.REQUEUE``; this process then waits for it, whatever arrives.

The command starts in a session of its own with SIGUSR2 ignored (an ignored signal stays ignored across exec): a
warning that comes before its handler is installed, or to a command that has none, does not end it two minutes
early. A signal is passed on to the command's whole process group, so a wrapper (``bash train.sh``) and the python
it starts both get it; a wrapper should ``exec`` its program, as a shell cannot trap a signal ignored at its start.
Each signal also creates the task's stop file (``jobs.taskenv.STOP_FILE``), so that
``clusterdeck.task().stop_requested()`` sees a warning that came while the signal was still ignored.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FORWARDED = (signal.SIGUSR2, signal.SIGTERM)
TAIL_LINES = 20
LINE_CHARS = 500
"""A kept line longer than this is cut: a progress bar without a newline must not fill ``show``."""
STDERR_GRACE_S = 5.0
"""How long the reader may take after the command exited, for the last bytes of its stderr."""


@dataclass(frozen=True)
class Ended:
    """How the command ended: its exit code (negative: the signal that killed it) and its last stderr lines."""

    returncode: int
    stderr_tail: list[str]
    signals: list[str]
    """The signals passed on to it, in order."""

    def describe(self, command: Sequence[str]) -> str:
        """``python train.py exited with 3``, or ``… was killed by SIGKILL``, and the last stderr line."""
        shown = shlex.join([Path(command[0]).name, *command[1:]])  # python, not /opt/envs/…/bin/python
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        if self.returncode < 0:
            name = _signal_name(-self.returncode)
            how = f"was killed by {name}"
            if name == "SIGKILL":
                how += " (out of memory, or the scheduler ended it)"
            elif name in self.signals:
                how += " (passed on by clusterdeck; the command did not handle it)"
        else:
            how = f"exited with {self.returncode}"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"`{shown}` {how}" + (f"; its stderr ended: {last.strip()}" if last else "")


def run_command(command: Sequence[str], *, cwd: Path, env: Mapping[str, str], stop_file: Path | None = None) -> Ended:
    """Runs ``command`` to its end; a program that cannot be started is an OSError naming it."""
    passed: list[str] = []
    with _forwarding(passed, stop_file) as (started, pending):
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: signals go to the command and what it started
            preexec_fn=_ignore_usr2,  # only a signal disposition is set between fork and exec
        )
        started.append(process)
        for signum in pending:  # arrived while it was starting: it hears them now
            _send(process, signum)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        assert process.stderr is not None
        reader = threading.Thread(target=_pass_on, args=(process.stderr, tail), name="stderr", daemon=True)
        reader.start()
        returncode = process.wait()
        reader.join(timeout=STDERR_GRACE_S)
        if reader.is_alive():
            print("[clusterdeck] a process the command started still holds its stderr; not read further", flush=True)
    return Ended(returncode, list(tail), passed)


def _ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _pass_on(stream: IO[bytes], tail: deque[str]) -> None:
    """Writes each chunk of ``stream`` through to this process's stderr as it comes, and keeps its last lines."""
    out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    fd, pending = stream.fileno(), ""
    while chunk := os.read(fd, 65536):
        if out is not None:
            out.write(chunk)
            out.flush()
        else:
            sys.stderr.write(chunk.decode(errors="replace"))
        *lines, pending = (pending + chunk.decode(errors="replace")).replace("\r", "\n").split("\n")
        tail.extend(line[:LINE_CHARS] for line in lines)
        pending = pending[-LINE_CHARS:]
    if pending:
        tail.append(pending)
    stream.close()


@contextmanager
def _forwarding(passed: list[str], stop_file: Path | None) -> Iterator[tuple[list[subprocess.Popen[bytes]], list[int]]]:
    """Handlers that pass each of ``FORWARDED`` on to the started command (none yet: the signal is kept for it)."""
    started: list[subprocess.Popen[bytes]] = []
    pending: list[int] = []

    def forward(signum: int, _: Any) -> None:
        passed.append(_signal_name(signum))
        if stop_file is not None:
            with suppress(OSError):
                os.close(os.open(stop_file, os.O_CREAT | os.O_WRONLY, 0o644))
        if started:
            _send(started[0], signum)
        else:  # the command is starting: passed on once it has
            pending.append(signum)

    if threading.current_thread() is not threading.main_thread():
        yield started, pending
        return
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield started, pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _send(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the command leads its own group (start_new_session)
    except ProcessLookupError:
        return
    os.write(2, f"[clusterdeck] {_signal_name(signum)} passed on to the command (pid {process.pid})\n".encode())


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
