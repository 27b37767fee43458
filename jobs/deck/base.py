"""The operations the CLI and the app need on a runs root, whichever machine holds it.

A deck lists, resolves, views, submits, cancels, resumes and compares runs, asks the
scheduler about the cluster, and gives the ``FileAccess`` through which the tailing readers
(``jobs.tail``) follow a run's logs and metrics from byte offsets. ``LocalDeck`` calls the
engine on this machine; ``SshDeck`` runs clusterdeck on a login node over one SSH connection
and reads the run files over SFTP. Every method may block (a scheduler query, the network):
call them from a worker thread, never a UI thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from clusterdeck.jobs.cluster import ClusterView
    from clusterdeck.jobs.compare import Comparison
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.status import RunView
    from clusterdeck.jobs.tail.access import FileAccess


Prompter = Callable[[str, str, list[tuple[str, bool]]], list[str]]
"""Answers a keyboard-interactive (two-factor) login: (title, instructions, [(prompt, echo)]) → answers.

Called on the thread that is connecting; the terminal's asks with ``getpass``, the app's shows a dialog.
"""


class Deck(ABC):
    files: FileAccess
    """How the run directories' files are read (local files, or SFTP)."""
    local: bool = True
    """The paths a spec names, and those of the runs, are this machine's: they can be checked and resolved here.
    False for a login node's (a remote deck): those are checked there, when the spec is submitted."""
    events: Callable[[str], None] | None = None
    """Told about the connection (lost, reconnecting, back), from whichever thread met it; remote decks only."""
    prompter: Prompter | None = None
    """Answers two-factor prompts when a remote deck has to log in again; remote decks only."""

    @property
    @abstractmethod
    def where(self) -> str:
        """The runs root as a user reads it: ``/home/me/.clusterdeck/runs`` or ``login1:~/.clusterdeck/runs``."""

    @abstractmethod
    def listing(self) -> list[dict[str, Any]]:
        """One entry per run, oldest first, as ``clusterdeck ls --json`` prints them (its ``runs``)."""

    @abstractmethod
    def resolve(self, address: str) -> RunPaths:
        """A run by id, unique id prefix or unique name; ``RunNotFound`` when there is none or several."""

    @abstractmethod
    def view(self, paths: RunPaths) -> RunView:
        """The run's state now (its record, its jobs' status files and the scheduler)."""

    @abstractmethod
    def submit(self, table: dict[str, Any], source: str) -> RunPaths:
        """Validates the spec ``table`` (problems name ``source``), checks its inputs, submits it."""

    @property
    def submit_root(self) -> Path | None:
        """The runs root every submission goes to, whatever a spec's ``cluster.runs_root`` says (``--runs-root``);
        None when a spec's own, or the default, decides (or the root is a login node's, unknown here)."""
        return None

    def unlisted_root(self, paths: RunPaths) -> str:
        """The runs root a run it submitted went to when the deck does not list that root (a spec's
        ``cluster.runs_root``), else "". A remote deck's runs are the login node's: never resolved here."""
        return ""

    @abstractmethod
    def cancel(self, paths: RunPaths) -> RunView: ...

    @abstractmethod
    def resume(self, paths: RunPaths) -> bool:
        """True if steps were resubmitted, False when every step had completed."""

    @abstractmethod
    def compare(self, addresses: list[str]) -> Comparison: ...

    @abstractmethod
    def cluster(self) -> ClusterView:
        """Partitions and the user's queued jobs; never raises for a missing or silent SLURM."""

    def close(self) -> None:  # noqa: B027 -- a local deck holds nothing
        """Gives back what the deck holds (a connection)."""

    def __enter__(self) -> Deck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
