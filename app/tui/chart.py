"""The app's line chart: ``render.chart``'s drawing at the widget's size, in the colours of the app's theme."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from rich.text import Text
from textual.color import Color
from textual.widget import Widget

from clusterdeck.app.render.chart import COLOURS, Series, colour, draw_chart

__all__ = ["LineChart", "Series", "colour", "theme_palette"]  # the compare screen's names for a chart's parts
THEME_COLOURS = ("primary", "accent", "success", "error", "secondary", "warning")
"""The theme's colours a chart's series take, in this order (repeats dropped)."""


def theme_palette(variables: Mapping[str, str]) -> tuple[str, ...]:
    """The theme's colours for series (``THEME_COLOURS``), each made readable on the theme's background: one too
    close to it in brightness (textual-dark's secondary, a dark blue) is lightened, or darkened on a light theme."""
    return _palette(variables.get("background", "#000000"), tuple(variables.get(name, "") for name in THEME_COLOURS))


@cache
def _palette(background_colour: str, colours: tuple[str, ...]) -> tuple[str, ...]:
    background = Color.parse(background_colour)
    dark = background.brightness < 0.5
    seen: list[str] = []
    for value in colours:
        if not value:
            continue
        c = Color.parse(value)
        for _ in range(4):
            if abs(c.brightness - background.brightness) >= 0.25:
                break
            c = c.lighten(0.1) if dark else c.darken(0.1)
        rich_colour = f"color({c.ansi})" if c.ansi is not None else c.hex  # an ANSI theme's colours by number
        if rich_colour not in seen:
            seen.append(rich_colour)
    return tuple(seen) or COLOURS


class LineChart(Widget):
    """A ``render_chart`` at the widget's size, in the app's theme; ``plot`` replaces its series."""

    DEFAULT_CSS = """
    LineChart { height: 12; }
    LineChart > .linechart--axis { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"linechart--axis"}

    def __init__(
        self,
        title: str,
        *,
        fmt: Callable[[float], str] | None = None,
        unit: str = "",
        x_label: str = "epoch",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.chart_title, self.fmt, self.unit, self.x_label = title, fmt, unit, x_label
        self.series: list[Series] = []
        self.label_width = 0
        """The width its y labels took when last drawn."""

    def plot(self, series: Sequence[Series]) -> None:
        self.series = list(series)
        self.refresh()

    def chart_options(self) -> dict[str, Any]:
        """What ``render_chart`` is given beyond the series and the size: a chart of a kind may add its own."""
        return {"fmt": self.fmt, "unit": self.unit, "x_label": self.x_label}

    def current_series(self) -> Sequence[Series]:
        return self.series

    def render(self) -> Text:
        text, self.label_width = draw_chart(
            self.chart_title,
            self.current_series(),
            self.size.width,
            self.size.height,
            palette=theme_palette(self.app.theme_variables),
            axis_style=self.get_component_rich_style("linechart--axis"),
            **self.chart_options(),
        )
        return text
