"""Runs side by side: who they are, how their specs differ, and their curves overlaid, one colour per run.

One worker reads the comparison through the app's deck (``Deck.compare``) and posts it; the
handler fills the table and the charts. While a run is still going the comparison is read
again every ``REFRESH_S``; ``r`` reads it again now.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from clusterdeck.app.tui.chart import LineChart, Series, colour
from clusterdeck.app.tui.messages import ComparisonLoaded
from clusterdeck.app.tui.screen import DeckScreen
from clusterdeck.jobs.compare import Comparison, format_value, letter
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.status import LIVE

REFRESH_S = 5.0
LEGEND_NAME = 14
"""Characters of a run's name in a chart's legend (the header above names it in full)."""


def percent(value: float) -> str:
    return f"{value:.1%}"


class CompareScreen(DeckScreen):
    BINDINGS = [Binding("escape", "back", "Back"), Binding("r", "reload", "Reload")]
    DEFAULT_CSS = """
    CompareScreen #compare-runs { height: auto; max-height: 6; padding: 0 1; background: $boost; }
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen .compare-title { padding: 0 1; margin-top: 1; text-style: bold; }
    CompareScreen #differences { height: auto; max-height: 12; }
    CompareScreen LineChart { height: 12; padding: 0 1; margin-top: 1; }
    """

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        # the deck compares runs by id (a run's directory is named by its id): the paths may be a login node's
        self.run_ids = [RunPaths(Path(p)).run_id for p in paths]
        self.comparison: Comparison | None = None
        self.loading = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="compare-runs")
        with VerticalScroll(id="compare-body"):
            yield Label("spec differences", id="differences-title", classes="compare-title")
            yield DataTable(id="differences", cursor_type="row", zebra_stripes=True)
            yield LineChart("train loss", id="loss-chart")
            yield LineChart("val top-1", fmt=percent, id="top1-chart")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"comparing {len(self.run_ids)} runs"
        self.timer = self.set_interval(REFRESH_S, self.load, pause=True)
        self.load()

    def load(self) -> None:
        if self.loading:  # one read at a time: a slow filesystem or sacct can be slower than the refresh
            return
        self.loading = True
        self.read()

    @work(thread=True, name="compare runs", group="compare", exclusive=True, exit_on_error=False)
    def read(self) -> None:
        comparison = self.cd.deck.compare(self.run_ids)
        if not get_current_worker().is_cancelled:
            self.post_message(ComparisonLoaded(comparison))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "compare":
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.loading = False
        if event.state == WorkerState.ERROR:
            self.timer.pause()
            text = f"cannot compare: {event.worker.error}"
            self.query_one("#compare-runs", Static).update(Text(text, style="bold red"))
            self.notify(text, severity="error", timeout=10, markup=False)

    def on_comparison_loaded(self, message: ComparisonLoaded) -> None:
        c, before = message.comparison, self.comparison
        self.comparison = c
        runs = self.query_one("#compare-runs", Static)
        runs.update(self.runs_text(c))
        runs.styles.height = len(c.run_ids)  # set, not auto: the legend's height never lags its lines
        if before is None or before.differences != c.differences or before.names != c.names:
            self.show_differences(c)
        self.plot(c)
        if any(state in LIVE for state in c.states):
            self.timer.resume()
        else:
            self.timer.pause()

    def runs_text(self, c: Comparison) -> Text:
        """One line per run: its colour and letter, id, name, state and best top-1; the legend of everything below."""
        lines = []
        for i, run_id in enumerate(c.run_ids):
            top = c.best_top1(i)
            best = f"best top-1 {top[1]:.1%} (epoch {top[0]})" if top else "no top-1 yet"
            lines.append(
                Text.assemble(
                    (f"■ {letter(i)} ", f"bold {colour(i)}"),
                    (c.names[i], "bold"),
                    f"  {run_id}  {c.states[i]}  {best}",
                )
            )
        return Text("\n").join(lines)

    def show_differences(self, c: Comparison) -> None:
        table = self.query_one("#differences", DataTable)
        table.clear(columns=True)
        table.add_column("key", key="key")
        for i, run_id in enumerate(c.run_ids):
            table.add_column(Text(f"{letter(i)} {c.names[i]}", style=f"bold {colour(i)}"), key=run_id)
        for key, values in c.differences:
            table.add_row(key, *(Text(format_value(v)) for v in values), key=key)  # a name's [x] is not markup
        title = "spec differences" if c.differences else "spec differences: none, the specs are the same"
        self.query_one("#differences-title", Label).update(title)

    def plot(self, c: Comparison) -> None:
        for chart_id, key in (("#loss-chart", "train_loss"), ("#top1-chart", "top1")):
            series = [
                Series(
                    f"{letter(i)} {c.names[i][:LEGEND_NAME]}",
                    [(float(epoch), value) for epoch, value in curves.get(key, [])],
                    colour(i),
                )
                for i, curves in enumerate(c.curves)
            ]
            self.query_one(chart_id, LineChart).plot(series)

    def action_reload(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()
