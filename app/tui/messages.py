"""Messages workers post to screens: small, named for what happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from jobs.cluster import ClusterView
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
class RunData(Message):
    """What the follow worker read in one poll; it reads no more until this is handled."""

    lines: list[tuple[LogFile, str]]
    records: list[dict[str, Any]]


@dataclass
class Trouble(Message):
    """A worker could not do its part this time (it goes on); said once until it changes."""

    text: str


@dataclass
class ClusterLoaded(Message):
    """One answer from sinfo and squeue (or why there was none)."""

    view: ClusterView


@dataclass
class ConnectionEvent(Message):
    """The deck's connection was lost, is being retried, or is back (``Deck.events``)."""

    text: str
