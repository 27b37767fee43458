"""Messages: workers post what they found to their screen; screens ask the app to go somewhere.

Each is small and named for what happened. A screen never opens another: it posts ``OpenRun``,
``NewRun``, ``CompareRuns`` or ``ShowCluster``, which bubble up to the app (``app.tui.app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from clusterdeck.jobs.cluster import ClusterView
from clusterdeck.jobs.compare import Comparison
from clusterdeck.jobs.overview import RunRow
from clusterdeck.jobs.status import RunView
from clusterdeck.jobs.tail.run import LogFile

if TYPE_CHECKING:
    from textual.screen import Screen

    from clusterdeck.jobs.spec_form import Checked
    from clusterdeck.jobs.templates import Template


@dataclass
class OpenRun(Message):
    """Show the run whose directory is ``path``."""

    path: str
    instead_of: Screen[Any] | None = None
    """The screen the run replaces (a form just submitted), if that is still on top; None: over the current one."""


@dataclass
class NewRun(Message):
    """Open the new-run form, empty or filled with a spec's ``table`` (a clone of a run)."""

    table: dict[str, Any] | None = None
    origin: str = ""


@dataclass
class CompareRuns(Message):
    """Show these runs side by side."""

    paths: list[str]


@dataclass
class ShowCluster(Message):
    """Show the cluster's partitions and the user's jobs."""


@dataclass
class ActionDone(Message):
    """An action on a run (cancel, resume, …) answered, or the app's own (keeping the theme) failed: what to tell
    the user."""

    text: str
    failed: bool = False


@dataclass
class Warned(Message):
    """A submission or resume warned of what the user may know better (``SchedulerWarning``): one notification each."""

    texts: list[str]


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


@dataclass
class TemplatesListed(Message):
    templates: list[Template]


@dataclass
class TemplateRead(Message):
    template: Template
    table: dict[str, Any]
    note: str


@dataclass
class FormChecked(Message):
    version: int
    table: dict[str, Any]
    checked: Checked
    resolved: str
    scripts: dict[str, str]


@dataclass
class Submitted(Message):
    path: str
    run_id: str
    elsewhere: str
    """The runs root the run went to when the deck does not list it, else ""."""


@dataclass
class SubmitFailed(Message):
    problems: list[str]
    source: str


@dataclass
class ComparisonLoaded(Message):
    comparison: Comparison
