"""``clusterdeck`` with no arguments: the app. ``make_app`` serves the CLI and the tests alike.

The app reaches the runs only through its ``Deck`` (this machine's engine, or a login node over
SSH); every deck call may block, so screens make them from thread workers. The app owns
navigation: it is the one module that knows every screen, and screens ask it to go somewhere
with a message (``OpenRun``, ``NewRun``, ``CompareRuns``, ``ShowCluster``).

Workers follow one pattern, here and in every screen: a method decorated with Textual's
``@work(thread=True, name=…, group=…, exclusive=…, exit_on_error=False)`` does the blocking
calls and posts what it found as a message; the handler, on the UI thread, updates the
widgets. A worker that raises lands in its screen's ``on_worker_state_changed``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.content import Content

from clusterdeck.app.tui.cluster import ClusterScreen
from clusterdeck.app.tui.compare import CompareScreen
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.messages import ActionDone, CompareRuns, ConnectionEvent, NewRun, OpenRun, ShowCluster
from clusterdeck.app.tui.newrun import NewRunScreen
from clusterdeck.app.tui.prompt import tui_prompter
from clusterdeck.app.tui.runs import RunsScreen
from clusterdeck.jobs.deck.base import Deck


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

    # -- navigation: screens post, the app goes ---------------------------------------------------

    def on_open_run(self, message: OpenRun) -> None:
        if message.instead_of is None:
            self.push_screen(RunDetailScreen(message.path))
        elif self.screen is message.instead_of:  # left meanwhile: the run is listed, nothing jumps
            self.switch_screen(RunDetailScreen(message.path))

    def on_new_run(self, message: NewRun) -> None:
        self.push_screen(NewRunScreen(message.table, origin=message.origin))

    def on_compare_runs(self, message: CompareRuns) -> None:
        self.push_screen(CompareScreen(message.paths))

    def on_show_cluster(self, _: ShowCluster) -> None:
        self.push_screen(ClusterScreen())

    # -- actions on runs: they finish even if the screen that asked is left ------------------------

    def start_action(self, what: str, action: Callable[[], str]) -> None:
        """Runs ``action`` (a deck call that returns what to tell the user) off the UI thread, one at a time."""
        if any(w.group == "actions" and w.is_running for w in self.workers):
            self.notify("busy with the last action", severity="warning")
            return
        self._act(what, action)

    @work(thread=True, name="action", group="actions", exclusive=False, exit_on_error=False)
    def _act(self, what: str, action: Callable[[], str]) -> None:
        try:
            self.post_message(ActionDone(action()))
        except Exception as exc:  # the deck's answer (a UserError, a lost connection): the user's to read
            self.post_message(ActionDone(f"{what}: {exc}", failed=True))

    def on_action_done(self, message: ActionDone) -> None:
        if message.failed:
            self.notify(message.text, severity="error", markup=False, timeout=10)
        else:
            self.notify(message.text, markup=False)

    # -- the deck's connection ---------------------------------------------------------------------

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
        from clusterdeck.jobs.deck.local import LocalDeck

        if runs_root is None:
            from clusterdeck.jobs.runs import default_runs_root

            runs_root = default_runs_root()
        deck = LocalDeck(runs_root, root_given=root_given)
    return ClusterdeckApp(deck)
