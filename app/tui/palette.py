"""The app's own commands in Textual's command palette (ctrl+p), beside Textual's (theme, keys, quit …).

``DeckCommands`` is a Textual ``Provider``: the palette asks it for hits as the user types. It names no screen:
when the palette opens, it asks the app (``PaletteApp``), which alone knows every screen (``app.tui.app``), for
the commands that apply over the screen the palette was opened on and for the runs to open, and keeps them while
the palette is open. A run (from the rows the runs screen lists: no record is read for the palette) is found by
typing its name or id, the best ``RUN_HITS`` of them: a runs root of thousands would bury the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.fuzzy import Matcher
from textual.screen import Screen

from clusterdeck.jobs.templates import Template, list_templates

RUN_HITS = 20
"""The best-matching runs a search offers: the palette shows its hits best first, and more would only cost time."""


@dataclass(frozen=True)
class PaletteCommand:
    name: str
    help: str
    run: Callable[[], object]
    listed: bool = True
    """Offered before anything is typed; False: found by typing (one of many alike: each template)."""


class PaletteApp(Protocol):
    def palette_commands(self, screen: Screen[object], templates: list[Template]) -> list[PaletteCommand]:
        """The commands that apply over ``screen``, the new runs from ``templates`` among them."""

    def palette_runs(self) -> list[PaletteCommand]:
        """A command to open each run listed, in the order to offer them where they match as well."""


class DeckCommands(Provider):
    async def startup(self) -> None:
        # the user's templates may sit on a network home: listed off the event loop, once per palette
        templates = await asyncio.to_thread(list_templates)
        app = cast(PaletteApp, self.app)
        self.commands, self.runs = app.palette_commands(self.screen, templates), app.palette_runs()

    async def discover(self) -> Hits:
        for command in self.commands:
            if command.listed:
                yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self.commands:
            if (score := matcher.match(command.name)) > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, text=command.name, help=command.help)
        # 10,000 runs take ~45 ms to match: off the event loop, so that typing never waits on it
        for score, command in await asyncio.to_thread(best_runs, matcher, self.runs):
            yield Hit(score, matcher.highlight(command.name), command.run, text=command.name, help=command.help)


def best_runs(matcher: Matcher, runs: list[PaletteCommand]) -> list[tuple[float, PaletteCommand]]:
    """The ``RUN_HITS`` runs that match best, in the order given where they score the same."""
    scored = [(score, i) for i, run in enumerate(runs) if (score := matcher.match(run.name)) > 0]
    scored.sort(key=lambda hit: (-hit[0], hit[1]))
    return [(score, runs[i]) for score, i in scored[:RUN_HITS]]
