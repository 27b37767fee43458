"""The run detail's log panel: a tail of the jobs' log lines (its charts are ``plots``).

The panel holds a bounded history (``LOG_LINES`` lines) and is fed by its screen; it never
reads files itself.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.highlighter import Highlighter
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Log

from clusterdeck.jobs.tail.run import LogFile

LOG_LINES = 5000
SHOWN = 2000
"""Characters of a line drawn; the rest (tqdm bars, dumped tensors) is kept, not shown."""
HIGHLIGHTS = (
    (re.compile(r"Traceback|Error\b|error:|FAILED|Killed"), "bold red"),
    (re.compile(r"out of memory|OOM|OutOfMemory", re.I), "bold magenta"),
    (re.compile(r"NCCL"), "yellow"),
    (re.compile(r"\bnan\b|\binf\b", re.I), "bold red"),
)


class LogPanel(Vertical):
    """The jobs' log lines: follow or pause, a search, one rank or all, alarming lines highlighted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lines: deque[tuple[LogFile, str]] = deque(maxlen=LOG_LINES)
        self.search = ""
        self.rank: int | None = None
        self.following = True

    def compose(self) -> ComposeResult:
        yield Label(self.status(), id="log-status")
        log = Log(id="log", max_lines=LOG_LINES, highlight=True, auto_scroll=True)
        log.highlighter = AlarmHighlighter()
        yield log

    def status(self) -> str:
        ranks = "all ranks" if self.rank is None else f"rank {self.rank}"
        mode = "following" if self.following else "paused"
        search = f" · search: {self.search}" if self.search else ""
        return f"{mode} · {ranks}{search}"

    def wanted(self, file: LogFile, line: str) -> bool:
        return (self.rank is None or file.rank == self.rank) and (not self.search or self.search in line.lower())

    def add(self, lines: Iterable[tuple[LogFile, str]]) -> None:
        """Keeps the lines; shows them unless paused (a paused view does not move under the reader)."""
        batch = list(lines)
        self.lines.extend(batch)
        if self.following:
            self.show([(f, line) for f, line in batch if self.wanted(f, line)])

    def show(self, lines: list[tuple[LogFile, str]]) -> None:
        """Hands the lines to a ``Log``, which keeps strings and styles only the lines on screen: a burst
        of thousands costs a list append, not thousands of rendered lines."""
        shown = lines[-LOG_LINES:]  # a burst larger than the panel: only what it can hold is kept
        if shown:
            self.query_one(Log).write_lines(as_shown(line) or " " for _, line in shown)  # "" would be dropped

    def redraw(self) -> None:
        self.query_one(Log).clear()
        self.show([(f, line) for f, line in self.lines if self.wanted(f, line)])
        self.query_one("#log-status", Label).update(self.status())

    def toggle_follow(self) -> None:
        self.following = not self.following
        self.query_one(Log).auto_scroll = self.following
        if self.following:
            self.redraw()  # what came while paused
        self.query_one("#log-status", Label).update(self.status())

    def next_rank(self) -> None:
        ranks = sorted({f.rank for f, _ in self.lines})
        order: list[int | None] = [None, *ranks]
        self.rank = order[(order.index(self.rank) + 1) % len(order)] if self.rank in order else None
        self.redraw()

    def set_search(self, text: str) -> None:
        self.search = text.strip().lower()
        self.redraw()


def as_shown(line: str) -> str:
    """The line as a terminal shows it: after its last carriage return (tqdm), cut to ``SHOWN``."""
    return line.rsplit("\r", 1)[-1][:SHOWN]


class AlarmHighlighter(Highlighter):
    """Tracebacks, OOM, NCCL and NaN lines coloured; applied by the log to the lines on screen only."""

    def highlight(self, text: Text) -> None:
        for pattern, style in HIGHLIGHTS:
            if pattern.search(text.plain):
                text.stylize(style)
                return
