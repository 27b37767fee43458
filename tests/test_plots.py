"""The detail screen's charts: readable axes, the x axis toggle, the theme's colours, resampling, and empty tabs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.color import Color
from textual.theme import BUILTIN_THEMES
from textual.widgets import TabbedContent

import clusterdeck.app.render.chart as chart
from clusterdeck.app.render.axes import clock, nice_range, number, tick_labels
from clusterdeck.app.render.chart import Series, render_chart
from clusterdeck.app.render.traces import MAX_POINTS, Timeline, Trace
from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.chart import theme_palette
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.plots import PlotsPanel, TraceChart, why_empty
from clusterdeck.app.watch import Screen
from clusterdeck.jobs.deck.local import LocalDeck
from clusterdeck.jobs.status import view_runs
from clusterdeck.jobs.tail.live import LiveRun
from tests.conftest import until
from tests.test_snapshots import NOT_A_PID, T0, make_run

# --- axes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (15_100.0, "/s", "15.1k/s"),
        (459.9, " MB/s", "459.9 MB/s"),
        (1_234.0, " MB/s", "1.234 GB/s"),
        (91.1, " %", "91.1 %"),
        (15_060.0, "", "15.06k"),  # what printed as 1.506e+04
        (0.0378, "", "0.0378"),
        (2.0, "", "2"),
        (0.0, "/s", "0/s"),
        (14.3, " GB", "14.3 GB"),
    ],
)
def test_numbers_are_written_short_with_their_unit(value: float, unit: str, text: str) -> None:
    assert number(value, unit) == text


def test_an_axis_has_round_ends_and_ticks() -> None:
    low, high, ticks = nice_range(0.52, 2.3, rows=6)
    assert (low, high) == (0.5, 2.5) and {0.5, 1.0, 2.0, 2.5} <= set(ticks)
    low, high, ticks = nice_range(1150.0, 1210.0, rows=8, fixed_low=0.0)  # a rate: from 0
    assert low == 0.0 and high >= 1210 and all(t == round(t) for t in ticks)
    assert nice_range(80.0, 95.0, rows=8, fixed_high=100.0)[1] == 100.0
    assert nice_range(5.0, 5.0, rows=6)[:2] == (4.4, 5.6)  # one value: a flat line in the middle
    assert nice_range(0.0, 0.0, rows=6, fixed_low=0.0)[:2] == (0.0, 1.0)
    assert tick_labels([11_500.0, 11_550.0, 11_600.0], "/s") == ["11.5k/s", "11.55k/s", "11.6k/s"]
    assert [clock(s) for s in (45, 750, 3600, 3900)] == ["45s", "12m30s", "1h00m", "1h05m"]


# --- the chart ----------------------------------------------------------------------------------


def test_a_long_series_is_resampled_to_the_width_without_changing_a_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    """M4 keeps, per dot column, the points whose joining lines cover every dot: the chart of 5,000 noisy points is
    the chart of them all, drawn without resampling."""
    points = [(float(k), 2.0 / (1 + k / 300) + 0.2 * ((k * 7919) % 13) / 13) for k in range(5000)]
    assert len(chart.m4([(round(x / 50), y) for x, y in points])) <= 4 * 101
    resampled = render_chart("loss", [Series("train", points), Series("val", points[::500])], 70, 12, unit="")
    monkeypatch.setattr(chart, "m4", lambda dots: dots)
    assert resampled == render_chart("loss", [Series("train", points), Series("val", points[::500])], 70, 12, unit="")
    rows = resampled.plain.splitlines()[1:-1]
    first = rows[0].index("┤") + 1
    assert any(row[first] != " " for row in rows) and any(row[-1] != " " for row in rows)  # it spans the width


def test_the_legend_wraps_and_counts_what_did_not_fit() -> None:
    series = [Series(f"loader node0{k}/{k}", [(0.0, 1.0), (1.0, 2.0)]) for k in range(8)]
    lines = render_chart("data read", series, 60, 12, unit=" MB/s").plain.splitlines()
    assert len(lines) == 12 and all(len(line) <= 60 for line in lines)
    assert "loader node00/0" in lines[0] and "loader node0" in lines[1] and lines[1].rstrip().endswith(tuple("12345"))
    assert lines[1].split("+")[-1].isdigit()  # "+N": N series more than the legend's two lines hold


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light", "nord", "solarized-light"])
def test_the_series_take_the_themes_colours_readable_on_its_background(theme: str) -> None:
    variables = BUILTIN_THEMES[theme].to_color_system().generate()
    palette = theme_palette(variables)
    background = Color.parse(variables["background"]).brightness
    assert len(palette) >= 4 and len(set(palette)) == len(palette)
    assert palette[0] == Color.parse(variables["primary"]).hex  # the theme's own, first
    assert all(abs(Color.parse(c).brightness - background) >= 0.25 for c in palette)


# --- the charts' data ---------------------------------------------------------------------------


def test_telemetry_is_placed_on_the_epoch_axis_by_the_runs_timeline() -> None:
    timeline = Timeline()
    for t, epoch in ((100.0, 0.5), (110.0, 1.0), (130.0, 2.0)):
        timeline.add(t, epoch)
        timeline.saw(t)
    trace = Trace("data")
    for t in (90.0, 105.0, 120.0, 140.0):  # before training, between records, after the last
        trace.add(t, None, t / 10)
        timeline.saw(t)
    assert trace.points("epoch", timeline) == [(0.75, 10.5), (1.5, 12.0)]
    assert trace.points("time", timeline)[0] == (0.0, 9.0)  # since the first record seen
    assert timeline.epoch_at(130.0) == 2.0 and timeline.epoch_at(131.0) is None


def test_a_series_past_its_most_points_keeps_its_start_more_coarsely() -> None:
    trace = Trace("loss")
    for k in range(MAX_POINTS + 1):
        trace.add(float(k), k / 100, float(k))
    assert len(trace.values) == MAX_POINTS // 2 + 1 and trace.times[0] == 0.0 and trace.values[1] == 2.0


def test_an_empty_tab_says_why() -> None:
    live = LiveRun()
    assert why_empty(live, ended=False)["gpu"] == "no GPU records yet: training has not begun"
    assert why_empty(live, ended=True)["io"] == "no I/O records: this run never trained"
    live.add({"kind": "system", "time": T0, "node": "n", "rank": 0, "cpu_pct": 1.0, "rss_mb": 1.0})
    assert why_empty(live, ended=False)["gpu"] == "no GPU records: this run trains on CPU"
    assert why_empty(live, ended=True)["gpu"] == "no GPU records: this run trained on CPU"


# --- in the app ---------------------------------------------------------------------------------


async def test_x_toggles_the_charts_between_epochs_and_wall_time(tmp_path: Path) -> None:
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "axes", 0.05, 3, [0.375, 0.52, 0.61])
    app = make_app(deck=LocalDeck(tmp_path / "runs"))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RunDetailScreen(str(paths.root)))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.view is not None)
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        charts = screen.query_one("#curves", PlotsPanel).charts
        await until(pilot, lambda: "val accuracy" in charts and len(charts["loss"].traces["train"].values) == 36)
        screen.query_one(TabbedContent).active = "curves-tab"
        loss = charts["loss"]
        await until(pilot, lambda: loss.size.width > 0)

        def x_axis(c: TraceChart) -> list[str]:
            return c.render().plain.splitlines()[-1].replace("└", " ").replace("─", " ").split()

        assert x_axis(loss) == ["0", "epoch", "3"]
        assert loss.render().plain.splitlines()[0] == "loss  ━━ train loss 0.5  ━━ val loss 1.49"
        await pilot.press("x")
        assert screen.x_axis == "time"
        telemetry = paths.telemetry(NOT_A_PID, 0)
        times = [json.loads(line)["time"] for path in (paths.metrics, telemetry) for line in path.open()]
        span = max(times) - min(times)  # the run's first record to its last, of any kind
        assert span == 35.5 and x_axis(loss) == ["0s", "wall", "time", "36s"]
        assert x_axis(charts["val accuracy"]) == x_axis(loss)  # one axis for every chart
        await pilot.press("x")
        assert x_axis(loss) == ["0", "epoch", "3"]


async def test_the_charts_redraw_in_the_theme_chosen(tmp_path: Path) -> None:
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "colours", 0.05, 1, [0.4])
    app = make_app(deck=LocalDeck(tmp_path / "runs"))
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(RunDetailScreen(str(paths.root)))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.view is not None)
        charts = app.screen.query_one("#curves", PlotsPanel).charts
        await until(pilot, lambda: "loss" in charts)
        app.screen.query_one(TabbedContent).active = "curves-tab"
        await until(pilot, lambda: charts["loss"].size.width > 0)
        for theme in ("textual-dark", "nord"):
            app.theme = theme
            await pilot.pause()
            head = charts["loss"].render().split("\n")[0]
            swatch = head.plain.index("━━")
            colours = {str(s.style) for s in head.spans if s.start <= swatch < s.end}
            assert (
                colours == {theme_palette(app.theme_variables)[0]} == {Color.parse(BUILTIN_THEMES[theme].primary).hex}
            )


# --- watch ----------------------------------------------------------------------------------------


def test_watch_charts_the_loss_and_accuracy_where_the_terminal_has_room(tmp_path: Path) -> None:
    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "watched", 0.05, 3, [0.375, 0.52, 0.61])
    view = view_runs([paths])[0]
    for height, charts in ((40, 2), (20, 1), (12, 0)):
        console = Console(width=100, height=height, file=io.StringIO(), record=True, color_system=None)
        screen, live = Screen(console), LiveRun()
        for raw in map(json.loads, paths.metrics.open()):
            record = live.add(raw)
            assert record is not None
            screen.record(record, view)
        console.print(screen.frame(view, live))
        lines = console.export_text().splitlines()
        assert len(lines) < height and all(len(line) <= 100 for line in lines)
        heads = [line for line in lines if "━━" in line]
        assert len(heads) == charts, lines
        if charts:
            assert heads[0] == "loss  ━━ train loss 0.5  ━━ val loss 1.49"
        if charts == 2:
            assert heads[1] == "val accuracy  ━━ top-1 61 %  ━━ top-5 100 %"
            assert lines[-1].replace("└", " ").replace("─", " ").split() == ["0", "epoch", "3"]


def test_watch_on_a_terminal_draws_the_charts(tmp_path: Path) -> None:
    from tests.test_telemetry import cli, run_in_pty

    paths = make_run(tmp_path / "runs", "20261122-101500-aaaaaa", "watched", 0.05, 1, [0.4])
    screen: dict[str, Any] = {}
    run_in_pty(cli("--runs-root", str(tmp_path / "runs"), "watch", paths.run_id), screen)  # 140×40
    assert screen["code"] == 0 and "Traceback" not in screen["screen"], screen["screen"][-2000:]
    assert "train loss 1.045" in screen["screen"] and "top-1 40 %" in screen["screen"]


@pytest.mark.parametrize(
    "points",
    [
        [(0.0, 1.0), (1.0, 1.0000000000000002)],  # equal but for float noise
        [(0.0, 100.0), (1.0, 100 * 0.9999999999999999)],
        [(0.0, 3e38), (1.0, 2.0)],  # a diverged loss (float32's largest value)
        [(0.0, -1e308), (1.0, 1e308)],  # a span that overflows
        [(0.0, 5.0)],  # one point, at the axis' start
    ],
)
def test_odd_values_draw_a_chart_with_readable_ends(points: list[tuple[float, float]]) -> None:
    from clusterdeck.app.render.chart import Series, render_chart

    text = render_chart("loss", [Series("loss", points)], 60, 10, x_min=0.0).plain
    lines = text.splitlines()
    assert len(lines) <= 10 and max(len(line) for line in lines) <= 60, text
    assert "-1" not in lines[-1].split()[:1], text  # the x axis starts at the first point, not before it
    labels = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    assert labels and all(len(label) <= 6 for label in labels), text  # no row of digits as a label
