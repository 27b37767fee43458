"""``clusterdeck`` with no arguments: the app. ``make_app`` serves the CLI and the tests alike.

The app reaches the runs only through its ``Deck`` (this machine's engine, or a login node over
SSH); every deck call may block, so screens make them from thread workers. The app owns
navigation: it is the one module that knows every screen, and screens ask it to go somewhere
with a message (``OpenRun``, ``NewRun``, ``CompareRuns``, ``ShowCluster``). The command palette (ctrl+p) offers
the same places and actions (``palette_commands``, through ``app.tui.palette``).

The theme is the user's: the one picked in the palette is kept in their config file (``[app] theme``,
``jobs.userconfig``) and used at the next start.

Workers follow one pattern, here and in every screen: a method decorated with Textual's
``@work(thread=True, name=…, group=…, exclusive=…, exit_on_error=False)`` does the blocking
calls and posts what it found as a message; the handler, on the UI thread, updates the
widgets. A worker that raises lands in its screen's ``on_worker_state_changed``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen

from clusterdeck.app.tui.cluster import ClusterScreen
from clusterdeck.app.tui.compare import CompareScreen
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.messages import (
    ActionDone,
    CompareRuns,
    ConnectionEvent,
    NewRun,
    OpenRun,
    ShowCluster,
    Warned,
)
from clusterdeck.app.tui.newrun import NewRunScreen
from clusterdeck.app.tui.palette import DeckCommands, PaletteCommand
from clusterdeck.app.tui.prompt import tui_prompter
from clusterdeck.app.tui.runs import RunsScreen
from clusterdeck.app.tui.warned import scheduler_warnings
from clusterdeck.jobs.deck.base import Deck
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.templates import Template
from clusterdeck.jobs.userconfig import config_path, load_app_settings


class ClusterdeckApp(App[None]):
    TITLE = "clusterdeck"
    CSS_PATH = "clusterdeck.tcss"
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False)]
    COMMANDS = App.COMMANDS | {DeckCommands}

    def __init__(self, deck: Deck, theme: str = "") -> None:
        """On ``deck``, in ``theme`` (Textual's default if ""); a UserError names the config's key if it is no theme."""
        super().__init__()
        if theme and theme not in self.available_themes:
            raise UserError(
                f"{config_path()}: app.theme: {theme!r} is not a theme of the app; "
                f"one of: {', '.join(sorted(self.available_themes))}"
            )
        self.kept_theme = theme or self.theme
        """The theme the config file holds (Textual's default while it holds none): only another one is written."""
        if theme:
            self.theme = theme  # watch_theme, at once: the kept one
        self.keeping = threading.Lock()
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

    # -- the command palette: the same places and actions as the screens' keys ---------------------

    def palette_commands(self, screen: Screen[object], templates: list[Template]) -> list[PaletteCommand]:
        """The app's commands over ``screen``, for ``app.tui.palette``: a new run (empty, or from one of
        ``templates``: found by typing), the cluster, the marked runs compared; on a run's screen, cancel and
        resume it (asking first, as its keys do)."""
        commands = [PaletteCommand("New run", "an empty form; type a template's name for one filled", self.new_run)]
        for t in templates:
            help = f"{'your' if t.source == 'yours' else 'a built-in'} template: {t.path}"
            commands.append(
                PaletteCommand(f"New run from template {t.name}", help, partial(self.new_run_from, t), False)
            )
        commands.append(PaletteCommand("Cluster view", "partitions, idle nodes and GPUs, your jobs", self.show_cluster))
        runs = self.runs_screen()
        if runs is not None:
            marked = len(runs.marked_paths())
            help = f"{marked} run{'s' * (marked != 1)} marked (space on the runs list marks one)"
            commands.append(PaletteCommand("Compare marked runs", help, runs.action_compare))
        if isinstance(screen, RunDetailScreen):
            run_id = screen.paths.run_id
            commands += [
                PaletteCommand(f"Cancel run {run_id}", "asks first: choose it again, or press c", screen.action_cancel),
                PaletteCommand(f"Resume run {run_id}", "resubmits the steps not completed", screen.action_resume),
            ]
        return commands

    def palette_runs(self) -> list[PaletteCommand]:
        """A command to open each run the runs screen lists (its rows: no record is read), newest first."""
        runs = self.runs_screen()
        return [
            PaletteCommand(f"Open run {r.name} {r.run_id}", f"{r.state} · {r.steps}", partial(self.open_run, r.path))
            for r in reversed(runs.rows if runs is not None else [])
        ]

    def runs_screen(self) -> RunsScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, RunsScreen)), None)

    def new_run(self) -> None:
        self.push_screen(NewRunScreen())

    def new_run_from(self, template: Template) -> None:
        self.push_screen(NewRunScreen(template=template))

    def show_cluster(self) -> None:
        self.push_screen(ClusterScreen())

    def open_run(self, path: str) -> None:
        if isinstance(self.screen, RunDetailScreen):  # one run's screen at a time: each polls while it lives
            self.switch_screen(RunDetailScreen(path))
        else:
            self.push_screen(RunDetailScreen(path))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title == "Theme":  # Textual's own picker; what it picks is kept (watch_theme)
                command = command._replace(help=f"Change the theme; kept in {config_path()}")
            yield command

    def watch_theme(self, theme: str) -> None:
        """A theme picked in the palette (Textual's Theme command) is written to the config for the next start."""
        if theme != self.kept_theme:
            self.kept_theme = theme
            self.keep_theme()

    @work(thread=True, name="keep the theme", group="config", exclusive=False, exit_on_error=False)
    def keep_theme(self) -> None:
        """Writes the theme now chosen to the config file (which may be on a network home: off the UI thread)."""
        from clusterdeck.jobs.userconfig import save_app_setting

        with self.keeping:  # one write at a time, each of the theme chosen by then: the last written is the last chosen
            theme = self.theme
            try:
                save_app_setting("theme", theme)
            except UserError as exc:
                self.post_message(ActionDone(f"theme {theme} not kept: {exc}", failed=True))

    # -- actions on runs: they finish even if the screen that asked is left ------------------------

    def start_action(self, what: str, action: Callable[[], str], *, warns: bool = False) -> None:
        """Runs ``action`` (a deck call that returns what to tell the user) off the UI thread, one at a time;
        ``warns``: it may raise scheduler warnings (a resume), which are then shown as notifications."""
        if any(w.group == "actions" and w.is_running for w in self.workers):
            self.notify("busy with the last action", severity="warning")
            return
        self._act(what, action, warns)

    @work(thread=True, name="action", group="actions", exclusive=False, exit_on_error=False)
    def _act(self, what: str, action: Callable[[], str], warns: bool) -> None:
        # Only an action that may warn waits for the warnings' lock (app.tui.warned): a cancel never waits
        # behind a submission whose pre-flight is slow.
        catching = scheduler_warnings(self.post_message) if warns else contextlib.nullcontext()
        try:
            with catching:
                done = action()
            self.post_message(ActionDone(done))
        except Exception as exc:  # the deck's answer (a UserError, a lost connection): the user's to read
            self.post_message(ActionDone(f"{what}: {exc}", failed=True))

    def on_warned(self, message: Warned) -> None:
        for text in message.texts:
            self.notify(text, title="warning", severity="warning", markup=False, timeout=15)

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
    """The app on ``deck``, else on this machine's runs under ``runs_root`` (the default root if None), in the theme
    the user's config keeps; a UserError names the file and key of a bad one."""
    theme = load_app_settings().theme
    if deck is None:
        from clusterdeck.jobs.deck.local import LocalDeck

        if runs_root is None:
            from clusterdeck.jobs.runs import default_runs_root

            runs_root = default_runs_root()
        deck = LocalDeck(runs_root, root_given=root_given)
    return ClusterdeckApp(deck, theme)
