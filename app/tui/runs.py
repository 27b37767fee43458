"""The runs screen: a live table of every run, filtered as you type, sorted by any column."""

from __future__ import annotations

import time
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input
from textual.worker import get_current_worker

from clusterdeck.app.formats import duration
from clusterdeck.app.tui.messages import CompareRuns, NewRun, OpenRun, RunsLoaded, ShowCluster
from clusterdeck.app.tui.polled import PolledScreen
from clusterdeck.jobs.overview import RunRow

COLUMNS = ("name", "id", "steps", "state", "progress", "elapsed", "nodes", "GPUs", "img/s", "best top-1")
SORT_KEYS: dict[str, Any] = {
    "name": lambda r: r.name,
    "id": lambda r: r.run_id,
    "steps": lambda r: r.steps,
    "state": lambda r: r.state,
    "progress": lambda r: r.progress or 0.0,
    "elapsed": lambda r: r.elapsed_s,
    "nodes": lambda r: r.nodes,
    "GPUs": lambda r: r.gpus,
    "img/s": lambda r: r.images_per_s or 0.0,
    "best top-1": lambda r: r.best_top1 if r.best_top1 is not None else -1.0,
}


def cells(row: RunRow, marked: bool = False) -> tuple[str | Text, ...]:
    return (
        Text(("● " if marked else "") + row.name),  # Text: a name's [brackets] are not markup
        row.run_id,
        row.steps,
        row.state,
        f"{row.progress:.0%}" if row.progress is not None else "-",
        duration(row.elapsed_s),
        str(row.nodes or "-"),
        str(row.gpus or "-"),
        f"{row.images_per_s:.0f}" if row.images_per_s else "-",
        f"{row.best_top1:.1%}" if row.best_top1 is not None else "-",
    )


def _width(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


class RunsScreen(PolledScreen):
    REFRESH_S = 5.0  # one sacct for every live run shown; the open run polls on its own, faster
    WHAT = "list runs"
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("n", "new_run", "New run"),
        Binding("space", "mark", "Mark"),
        Binding("d", "compare", "Compare"),
        Binding("u", "cluster", "Cluster"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunRow] = []
        self.sort_by, self.reverse = "id", True  # newest first
        self.marked: list[str] = []
        """Run ids marked for comparison, in the order they were marked."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: name, id or state", id="filter")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        table.focus()
        self.start_polling()

    def read(self) -> None:
        rows = [RunRow.from_entry(entry) for entry in self.cd.deck.listing()]
        if not get_current_worker().is_cancelled:
            self.post_message(RunsLoaded(rows))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.rows = message.rows
        self.show_rows()

    def shown(self) -> list[RunRow]:
        words = self.query_one("#filter", Input).value.lower().split()
        rows = [r for r in self.rows if all(w in f"{r.name} {r.run_id} {r.state}".lower() for w in words)]
        return sorted(rows, key=SORT_KEYS[self.sort_by], reverse=self.reverse)

    def show_rows(self) -> None:
        table = self.query_one(DataTable)
        selected = self.selected()
        table.clear()
        shown = [(row.run_id, cells(row, row.run_id in self.marked)) for row in self.shown()]
        # Widths set here, from the cells: the table's own measuring waits for an idle moment, and a
        # frame drawn before it keeps the old widths (a marked name shown clipped until the next refresh).
        for i, column in enumerate(table.ordered_columns):
            column.auto_width = False
            column.width = max([cell_len(str(column.label))] + [_width(values[i]) for _, values in shown])
        for run_id, values in shown:
            table.add_row(*values, key=run_id)
        if selected is not None and selected in {r.run_id for r in self.shown()}:
            table.move_cursor(row=table.get_row_index(selected))
        self.sub_title = (
            f"{len(table.rows)} of {len(self.rows)} runs · sorted by {self.sort_by} · {time.strftime('%H:%M:%S')}"
        )

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_input_changed(self, _: Input.Changed) -> None:
        self.show_rows()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        self.reverse = not self.reverse if key == self.sort_by else False
        self.sort_by = key
        self.show_rows()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.open(str(event.row_key.value))

    def action_open(self) -> None:
        run_id = self.selected()
        if run_id is not None:
            self.open(run_id)

    def open(self, run_id: str) -> None:
        row = next((r for r in self.rows if r.run_id == run_id), None)
        if row is not None:  # None: gone since the table was drawn
            self.post_message(OpenRun(row.path))

    def action_mark(self) -> None:
        run_id = self.selected()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self.show_rows()

    def action_compare(self) -> None:
        paths = [r.path for run_id in self.marked for r in self.rows if r.run_id == run_id]
        if len(paths) < 2:
            self.notify("mark two or more runs with space, then press d", severity="warning")
            return
        self.post_message(CompareRuns(paths))

    def action_cluster(self) -> None:
        self.post_message(ShowCluster())

    def action_new_run(self) -> None:
        self.post_message(NewRun())

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_one(DataTable).focus()

    def action_sort(self) -> None:
        keys = list(SORT_KEYS)
        self.sort_by = keys[(keys.index(self.sort_by) + 1) % len(keys)]
        self.reverse = self.sort_by in ("id", "progress", "img/s", "best top-1", "elapsed")
        self.show_rows()
