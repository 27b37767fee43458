"""Several series on one chart: braille dots (2×4 per cell) in rich Text, one colour per series, with a legend.

``render_chart`` draws for a given size (tests call it directly); ``LineChart`` is the widget
that draws at its own size. Consecutive points are joined by straight lines; where two series
cross, the cell shows the one drawn last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from rich.text import Text
from textual.widget import Widget

COLOURS = ("bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "bright_red", "bright_blue")
BRAILLE = 0x2800
DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
"""The bit of each dot of a braille cell, by dot row (0..3, top first) and dot column (0..1)."""
CHROME_ROWS = 3
"""Rows that are not plot: the title with the legend, the x axis, the x labels."""


def colour(i: int) -> str:
    """The colour of the ``i``-th series (run) everywhere on a screen."""
    return COLOURS[i % len(COLOURS)]


def short(value: float) -> str:
    return f"{value:.3g}"


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    colour: str


def _span(values: list[float], pad: float | None = None) -> tuple[float, float]:
    """Lowest and highest value; one value only: in the middle, ``pad`` (default 10 %) either side."""
    low, high = min(values), max(values)
    if low == high:
        pad = pad if pad is not None else abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    return low, high


def render_chart(
    title: str,
    series: Sequence[Series],
    width: int,
    height: int,
    *,
    fmt: Callable[[float], str] = short,
    x_label: str = "epoch",
) -> Text:
    """The chart as ``height`` lines of ``width`` cells at most: title and legend, plot rows, x axis, x labels."""
    head = Text(no_wrap=True, overflow="crop")
    head.append(title, style="bold")
    for s in series:
        head.append("  ")
        head.append("━━", style=s.colour)
        head.append(f" {s.label}")
    series = [Series(s.label, [(x, y) for x, y in s.points if math.isfinite(x) and math.isfinite(y)], s.colour)
              for s in series]  # fmt: skip
    points = [p for s in series for p in s.points]
    rows = height - CHROME_ROWS
    if not points or rows < 2:
        return Text("\n", no_wrap=True, overflow="crop").join([head, Text("no data yet" if not points else "")])
    x0, x1 = _span([x for x, _ in points], pad=1.0)
    y0, y1 = _span([y for _, y in points])
    labels = {0: fmt(y1), rows - 1: fmt(y0)}
    if rows >= 5:
        labels[rows // 2] = fmt(y1 - (y1 - y0) * (rows // 2 * 4 + 1.5) / (rows * 4 - 1))  # the value mid-row
    margin = max(len(label) for label in labels.values())
    cols = max(width - margin - 1, 2)
    grid = [[[0, -1] for _ in range(cols)] for _ in range(rows)]  # per cell: dot bits, index of the last series

    def dot(x: float, y: float) -> tuple[int, int]:
        return (round((x - x0) / (x1 - x0) * (cols * 2 - 1)), round((y1 - y) / (y1 - y0) * (rows * 4 - 1)))

    for i, s in enumerate(series):
        dots = [dot(x, y) for x, y in sorted(s.points)]
        for (ax, ay), (bx, by) in pairwise(dots) if len(dots) > 1 else zip(dots, dots, strict=True):
            steps = max(abs(bx - ax), abs(by - ay), 1)
            for k in range(steps + 1):
                dx, dy = round(ax + (bx - ax) * k / steps), round(ay + (by - ay) * k / steps)
                cell = grid[dy // 4][dx // 2]
                cell[0] |= DOT_BITS[dy % 4][dx % 2]
                cell[1] = i

    lines = [head]
    for r, cells in enumerate(grid):
        line = Text(no_wrap=True, overflow="crop")
        line.append(labels.get(r, "").rjust(margin) + ("┤" if r in labels else "│"), style="dim")
        for bits, owner in cells:
            line.append(chr(BRAILLE + bits) if bits else " ", style=series[owner].colour if bits else "")
        lines.append(line)
    lines.append(Text(" " * margin + "└" + "─" * cols, style="dim"))
    ticks = [" "] * cols
    left, right = f"{x0:g}", f"{x1:g}"
    middle = (cols - len(x_label)) // 2
    if middle > len(left) + 1 and middle + len(x_label) < cols - len(right) - 1:
        ticks[middle : middle + len(x_label)] = x_label
    ticks[: len(left)] = left
    ticks[cols - len(right) :] = right
    lines.append(Text(" " * (margin + 1) + "".join(ticks), style="dim"))
    return Text("\n", no_wrap=True, overflow="crop").join(lines)


class LineChart(Widget):
    """A ``render_chart`` at the widget's size; ``plot`` replaces its series."""

    DEFAULT_CSS = "LineChart { height: 12; }"

    def __init__(
        self, title: str, *, fmt: Callable[[float], str] = short, x_label: str = "epoch", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.chart_title, self.fmt, self.x_label = title, fmt, x_label
        self.series: list[Series] = []

    def plot(self, series: Sequence[Series]) -> None:
        self.series = list(series)
        self.refresh()

    def render(self) -> Text:
        return render_chart(
            self.chart_title, self.series, self.size.width, self.size.height, fmt=self.fmt, x_label=self.x_label
        )
