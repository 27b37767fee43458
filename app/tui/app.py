"""``clusterdeck`` with no arguments: the app. ``make_app`` serves the CLI and the tests alike."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from app.tui.runs import RunsScreen
from jobs.overview import Overview


class ClusterdeckApp(App[None]):
    TITLE = "clusterdeck"
    CSS_PATH = "clusterdeck.tcss"
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False)]

    def __init__(self, runs_root: Path, *, root_given: bool = False) -> None:
        super().__init__()
        self.runs_root = runs_root
        self.root_given = root_given
        """``--runs-root`` was given: runs submitted here go there, whatever a spec's ``cluster.runs_root`` says."""
        self.overview = Overview(runs_root)

    def on_mount(self) -> None:
        self.sub_title = str(self.runs_root)
        self.push_screen(RunsScreen())


def make_app(runs_root: Path, *, root_given: bool = False) -> ClusterdeckApp:
    return ClusterdeckApp(runs_root, root_given=root_given)
