"""The base of the app's screens: typed access to what they may use of the app they run in (its deck).

Screens do not import the app (``app.tui.app`` imports them): ``DeckApp`` is the part of it they see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from textual.screen import Screen

from clusterdeck.jobs.deck.base import Deck


class DeckApp(Protocol):
    deck: Deck

    def start_action(self, what: str, action: Callable[[], str], *, warns: bool = False) -> None:
        """Runs ``action`` off the UI thread and tells the user what it returned; it outlives the screen.
        ``warns``: it may raise scheduler warnings (a resume), shown as notifications."""


class DeckScreen(Screen[None]):
    @property
    def cd(self) -> DeckApp:
        """The app, as clusterdeck's (its ``deck``), not Textual's plain ``App``."""
        return cast(DeckApp, self.app)
