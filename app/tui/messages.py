"""Messages workers post to screens: small, named for what happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from jobs.overview import RunRow
from jobs.status import RunView
from jobs.tail.run import LogFile


@dataclass
class RunsLoaded(Message):
    rows: list[RunRow]


@dataclass
class RunUpdated(Message):
    view: RunView


@dataclass
class LogLines(Message):
    lines: list[tuple[LogFile, str]]


@dataclass
class NewRecords(Message):
    records: list[dict[str, Any]]
