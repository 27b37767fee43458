"""The base of the app's screens: typed access to the app they run in, and so to its deck."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from app.tui.app import ClusterdeckApp


class DeckScreen(Screen[None]):
    @property
    def cd(self) -> ClusterdeckApp:
        """The app, as clusterdeck's (its ``deck``), not Textual's plain ``App``."""
        return cast("ClusterdeckApp", self.app)
