"""``clusterdeck`` with no arguments: the app. ``make_app`` serves the CLI and the tests alike.

The app reaches the runs only through its ``Deck`` (this machine's engine, or a login node over
SSH); every deck call may block, so screens make them from thread workers.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.content import Content

from app.tui.messages import ConnectionEvent
from app.tui.prompt import tui_prompter
from app.tui.runs import RunsScreen
from jobs.deck.base import Deck


class ClusterdeckApp(App[None]):
    TITLE = "clusterdeck"
    CSS_PATH = "clusterdeck.tcss"
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False)]

    def __init__(self, deck: Deck) -> None:
        super().__init__()
        self.deck = deck
        """Where the runs are; its caller (the CLI) closes it."""
        self.connection_down = ""
        """The deck's last word about its connection while that is down; "" while it is up."""
        self.before = deck.events, deck.prompter
        """The deck's own callbacks (the CLI's), given back on unmount: the deck outlives the app."""

    def on_mount(self) -> None:
        self.sub_title = self.deck.where
        self.deck.events = self.connection_event
        self.deck.prompter = tui_prompter(self)
        self.push_screen(RunsScreen())

    def on_unmount(self) -> None:
        self.deck.events, self.deck.prompter = self.before

    def connection_event(self, text: str) -> None:
        """``Deck.events``: post_message is safe from any thread, the UI's own included (call_from_thread is not)."""
        self.post_message(ConnectionEvent(text))

    def on_connection_event(self, message: ConnectionEvent) -> None:
        """Each one a notification; the last one stays in the sub-title while the connection is down."""
        self.notify(message.text, severity="warning", markup=False)
        self.connection_down = "" if message.text.startswith("reconnected") else message.text
        self.sub_title = f"{self.deck.where} — {self.connection_down}" if self.connection_down else self.deck.where

    def format_title(self, title: str, sub_title: str) -> Content:
        """A screen's own sub-title hides the app's: a connection that is down shows on every screen."""
        content = super().format_title(title, sub_title)
        if self.connection_down and self.connection_down not in sub_title:
            content = Content.assemble(content, (" — ", "dim"), (self.connection_down, "bold"))
        return content


def make_app(runs_root: Path | None = None, *, root_given: bool = False, deck: Deck | None = None) -> ClusterdeckApp:
    """The app on ``deck``, else on this machine's runs under ``runs_root`` (the default root if None)."""
    if deck is None:
        from jobs.deck.local import LocalDeck

        if runs_root is None:
            from jobs.runs import default_runs_root

            runs_root = default_runs_root()
        deck = LocalDeck(runs_root, root_given=root_given)
    return ClusterdeckApp(deck)
