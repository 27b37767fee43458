"""Several series on one chart: braille dots (2×4 per cell) in rich Text, one colour per series, with a legend.

``render_chart`` draws for a given size: the app's charts (``app.tui.chart``) at their own size
in their theme's colours, ``watch`` under its live view. The y axis has round ticks written with
their unit (``axes``); the x axis its two ends and its name. Consecutive points are joined by
straight lines; where two series cross, the cell shows the one drawn last.

Drawn here rather than with plotext (textual-plotext): at 80×24 plotext's frame and its legend
drawn over the plot leave less room for the lines, its series colours are its own, not the
theme's, and a frame costs several times this one's (``bench/chart_frame.py``). Each series is
resampled to the plot's width first (M4: per dot column its first, lowest, highest and last
point, whose joining lines are those of all its points at this resolution), so a frame's cost
grows with the width, not with the length of the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby, pairwise
from operator import itemgetter
from typing import Any

from rich.style import Style
from rich.text import Text

from clusterdeck.app.render.axes import nice_range, number, tick_labels

COLOURS = ("bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "bright_red", "bright_blue")
BRAILLE = 0x2800
DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
"""The bit of each dot of a braille cell, by dot row (0..3, top first) and dot column (0..1)."""
AXIS_ROWS = 1
"""Rows below the plot: the x axis, its ends and its name written on it."""


def colour(i: int) -> str:
    """The colour of the ``i``-th series (run) everywhere on a screen."""
    return COLOURS[i % len(COLOURS)]


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    colour: str = ""
    """A rich colour; empty: the chart's palette's for the series' place."""


def legend(title: str, series: Sequence[Series], colours: Sequence[str], width: int, lines: int) -> list[Text]:
    """The title then each series' swatch and label, wrapped to ``width`` on ``lines`` lines at most, the last
    ending with ``+N`` for the series that did not fit."""
    items = [Text.assemble(("━━", c), f" {s.label}") for s, c in zip(series, colours, strict=True)]
    out = [Text(no_wrap=True, overflow="crop")]
    out[0].append(title, style="bold")

    def add(item: Text | str) -> None:
        if out[-1].cell_len:
            out[-1].append("  ")
        out[-1].append(item) if isinstance(item, str) else out[-1].append_text(item)

    for k, item in enumerate(items):
        gap = 2 if out[-1].cell_len else 0
        if len(out) < lines:
            if out[-1].cell_len and out[-1].cell_len + gap + item.cell_len > width:
                out.append(Text(no_wrap=True, overflow="crop"))
            add(item)
            continue
        rest = out[-1].cell_len + sum(2 + i.cell_len for i in items[k:]) - 2 + gap
        more = f"+{len(items) - k - 1}"
        if rest <= width or out[-1].cell_len + gap + item.cell_len + 2 + len(more) <= width:
            add(item)
        else:
            add(f"+{len(items) - k}")
            break
    return out


def _span(values: list[float], pad: float | None = None) -> tuple[float, float]:
    """Lowest and highest value; one value only: in the middle, ``pad`` (default 10 %) either side."""
    low, high = min(values), max(values)
    if low == high:
        pad = pad if pad is not None else abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    return low, high


def m4(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Of points sorted by their (dot column) x, per x the first, the lowest, the highest and the last, in their
    order (Jugel et al., "M4", VLDB 2014): the lines joining these cover the dots of the lines joining all of them."""
    kept: list[tuple[int, float]] = []
    for _, column in groupby(points, key=itemgetter(0)):
        run = list(column)
        if len(run) <= 4:
            kept.extend(run)
        else:
            ys = [y for _, y in run]
            low, high = ys.index(min(ys)), ys.index(max(ys))
            kept.extend(run[k] for k in sorted({0, low, high, len(run) - 1}))
    return kept


def render_chart(title: str, series: Sequence[Series], width: int, height: int, **options: Any) -> Text:
    """The chart as ``height`` lines of ``width`` cells at most (``draw_chart``'s, without its labels' width)."""
    return draw_chart(title, series, width, height, **options)[0]


def draw_chart(
    title: str,
    series: Sequence[Series],
    width: int,
    height: int,
    *,
    fmt: Callable[[float], str] | None = None,
    unit: str = "",
    x_label: str = "epoch",
    x_fmt: Callable[[float], str] | None = None,
    x_min: float | None = None,
    x_max: float | None = None,
    y_min: float | None = None,
    y_max: float | None = None,
    palette: Sequence[str] = COLOURS,
    axis_style: str | Style = "dim",
    empty: str = "no data yet",
    margin: int = 0,
) -> tuple[Text, int]:
    """The chart as ``height`` lines of ``width`` cells at most (the title and legend, the plot's rows, the x axis),
    and the width its y labels need; ``margin`` widens them (charts one above the other line up their x axes).

    The y axis's ticks are round numbers with ``unit`` (``axes.number``), or ``fmt``'s text; ``y_min``/``y_max``
    fix its ends (0 for a rate, 100 %), others widen to round values. The x axis runs from the first point (or
    ``x_min``) to the last (or ``x_max``: the charts of a tab share one axis), its ends written by ``x_fmt``.
    ``empty`` is said where no point is finite. ``palette`` colours the series that have no colour of their own.
    """
    colours = [s.colour or palette[i % len(palette)] for i, s in enumerate(series)]
    head = legend(title, series, colours, width, 1 if height < 8 else 2)
    lines = [Series(s.label, [(x, y) for x, y in s.points if math.isfinite(x) and math.isfinite(y)], c)
             for s, c in zip(series, colours, strict=True)]  # fmt: skip
    points = [p for s in lines for p in s.points]
    rows = height - len(head) - AXIS_ROWS
    if not points or rows < 2:
        return Text("\n", no_wrap=True, overflow="crop").join([*head, Text(empty if not points else "")]), 0
    ys = [y for _, y in points]
    y0, y1, ticks = nice_range(min(ys), max(ys), rows, fixed_low=y_min, fixed_high=y_max)
    dot_rows = rows * 4

    def dot_y(y: float) -> int:
        y = min(max(y, y0), y1)  # values beyond the axis' limit sit on its edge
        return min(max(round((y1 - y) / ((y1 - y0) or 1.0) * (dot_rows - 1)), 0), dot_rows - 1)

    labels: dict[int, str] = {}
    for tick, label in zip(ticks, [fmt(t) for t in ticks] if fmt else tick_labels(ticks, unit), strict=True):
        labels.setdefault(dot_y(tick) // 4, label)  # the ends first: a tick on an end's row is left out
    natural = max(len(label) for label in labels.values())
    margin = max(natural, margin)
    cols = max(width - margin - 1, 2)
    xs = [x for x, _ in points]
    x0, x1 = _span([*xs, *(x for x in (x_min, x_max) if x is not None)], pad=1.0)
    if x_min is not None and x0 < x_min <= min(xs):  # one point at 0: the axis starts there, not at -1
        x0 = x_min
        x1 = max(x1, x0 + 1.0)
    grid = [[[0, -1] for _ in range(cols)] for _ in range(rows)]  # per cell: dot bits, index of the last series

    for i, s in enumerate(lines):
        scale = (cols * 2 - 1) / (x1 - x0)
        dots = [(dx, dot_y(y)) for dx, y in m4([(round((x - x0) * scale), y) for x, y in sorted(s.points)])]
        for (ax, ay), (bx, by) in pairwise(dots) if len(dots) > 1 else zip(dots, dots, strict=True):
            steps = max(abs(bx - ax), abs(by - ay), 1)
            for k in range(steps + 1):
                dx, dy = round(ax + (bx - ax) * k / steps), round(ay + (by - ay) * k / steps)
                cell = grid[dy // 4][dx // 2]
                cell[0] |= DOT_BITS[dy % 4][dx % 2]
                cell[1] = i

    out = list(head)
    for r, cells in enumerate(grid):
        line = Text(no_wrap=True, overflow="crop")
        line.append(labels.get(r, "").rjust(margin) + ("┤" if r in labels else "│"), style=axis_style)
        run, owner = "", -1
        for bits, who in cells:  # one span per run of cells of one series: a frame is a few hundred spans
            who = who if bits else -1
            if who != owner and run:
                line.append(run, style=lines[owner].colour if owner >= 0 else "")
                run = ""
            owner = who
            run += chr(BRAILLE + bits) if bits else " "
        line.append(run, style=lines[owner].colour if owner >= 0 else "")
        out.append(line)
    axis = ["─"] * cols
    write = x_fmt or (lambda x: number(x))
    left, right, name = write(x0), write(x1), f" {x_label} "
    middle = (cols - len(name)) // 2
    if middle > len(left) and middle + len(name) < cols - len(right):
        axis[middle : middle + len(name)] = name
    axis[: len(left)] = left
    axis[cols - len(right) :] = right
    out.append(Text(" " * margin + "└" + "".join(axis), style=axis_style))
    return Text("\n", no_wrap=True, overflow="crop").join(out), natural
