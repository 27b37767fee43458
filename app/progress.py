"""Progress of long work (``stage``, ``inspect``: bytes; ``export``: samples) on stderr: a rich progress bar on a
terminal, a plain line every few seconds when stderr is a pipe or a file (a log keeps lines, not redraws),
nothing for work that ends before the first of them, nothing at all with ``--quiet``."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from types import TracebackType
from typing import IO, Any

PLAIN_EVERY = 5.0
"""Seconds between plain lines when stderr is not a terminal."""


def _mb_s(done: int, seconds: float) -> str:
    return f"{done / 1e6 / max(seconds, 1e-9):.0f} MB/s"


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or progress lines on stderr")


class ByteMeter:
    """``with ByteMeter("inspect", total) as meter: meter.advance(n)`` from any thread; ``total`` may be set late
    (``meter.total = …``, or with each call) and ``meter.update(done)`` sets the amount done. ``unit`` is ``"B"``
    (bytes: sizes and MB/s) or a word for items (``"samples"``: counts and a rate a second); ``quiet`` shows
    nothing."""

    def __init__(
        self,
        label: str,
        total: int = 0,
        *,
        unit: str = "B",
        quiet: bool = False,
        stream: IO[str] | None = None,
        every: float = PLAIN_EVERY,
    ) -> None:
        self.label = label
        self.unit = unit
        self.quiet = quiet
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.last_line = self.started
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> ByteMeter:
        if self.stream.isatty() and not self.quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            amounts = (
                [DownloadColumn(), TransferSpeedColumn()]
                if self.unit == "B"
                else [MofNCompleteColumn(), TextColumn(self.unit)]
            )
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                *amounts,
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total or None)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, n: int, total: int | None = None) -> None:
        """``n`` more done (of ``total``, when given): the shape of ``jobs.formats.base.ByteProgress``."""
        with self.lock:
            self.update(self.done + n, total)

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` in all (of ``total``, when given): the shape of the (done, total) callbacks of the jobs."""
        if total is not None:
            self.total = total
        self.done = done
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=self.total or None)
            return
        now = time.monotonic()
        if not self.quiet and now - self.last_line >= self.every:
            self.last_line = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        seconds = now - self.started
        rate = self.done / max(seconds, 1e-9)
        left = f", ETA {(self.total - self.done) / rate:.0f} s" if self.total and rate > 0 else ""
        if self.unit != "B":
            of = f"/{self.total:,}" if self.total else ""
            return f"{self.label}: {self.done:,}{of} {self.unit}, {rate:,.0f}/s{left}"
        of = f"/{self.total / 1e9:.2f}" if self.total else ""
        return f"{self.label}: {self.done / 1e9:.2f}{of} GB, {_mb_s(self.done, seconds)}{left}"
