"""The runs screen: a live table of every run, filtered as you type, sorted by any column.

A run waiting in the scheduler's queue shows when SLURM expects to start it (column ``start``), and, while its
row is the one selected, why it waits, in words, on the line under the table; a live run's progress is a bar.

A refresh redraws only what changed: with the same runs shown in the same order, the cells of the rows
that differ (a live run's elapsed time, a state), not the table; an ended run's row, the same object as
long as the runs index's line for it stands (``jobs.overview``), is passed over. An app left open on a
runs root of 10,000 runs stays near idle (bench/tui_load.py --idle-runs).
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from clusterdeck.app.formats import duration, queue_wait
from clusterdeck.app.tui.messages import CompareRuns, NewRun, OpenRun, RunsLoaded, ShowCluster
from clusterdeck.app.tui.polled import PolledScreen
from clusterdeck.jobs.overview import RunRow

if TYPE_CHECKING:
    from clusterdeck.jobs.dispatch.base import QueueWait

COLUMNS = ("name", "id", "steps", "state", "start", "progress", "elapsed", "nodes", "GPUs", "img/s", "best top-1")
BAR = 6
"""Cells of a progress bar, each in eighths: ``███▍   43%``."""
SORT_KEYS: dict[str, Any] = {
    "name": lambda r: r.name,
    "id": lambda r: r.run_id,
    "steps": lambda r: r.steps,
    "state": lambda r: r.state,
    "start": lambda r: start_order(r.queue),
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
        start_text(row.queue),
        progress_text(row.progress, live=row.ended_at is None),
        duration(row.elapsed_s),
        str(row.nodes or "-"),
        str(row.gpus or "-"),
        f"{row.images_per_s:.0f}" if row.images_per_s else "-",
        f"{row.best_top1:.1%}" if row.best_top1 is not None else "-",
    )


def start_text(queue: QueueWait | None, now: float | None = None) -> str:
    """When a waiting run may start, in local time: ``14:05`` today, ``Jan 31 14:05`` another day; ``unknown``
    while the scheduler gives no estimate (a dependency, a hold); ``-`` for a run that does not wait."""
    if queue is None:
        return "-"
    if queue.expected_start is None:
        return "unknown"
    at = time.localtime(queue.expected_start)
    today = time.localtime(now) if now is not None else time.localtime()
    return time.strftime("%H:%M" if at[:3] == today[:3] else "%b %d %H:%M", at)


def start_order(queue: QueueWait | None) -> float:
    """The ``start`` column's sort key: the soonest estimate first, then the waits without one, then the rest."""
    if queue is None:
        return math.inf
    return queue.expected_start if queue.expected_start is not None else sys.float_info.max


def progress_text(progress: float | None, *, live: bool) -> str:
    """A live run's progress as a bar of eighths and a share, ``███▍   43%``; an ended run's share alone."""
    if progress is None:
        return "-"
    share = min(max(progress, 0.0), 1.0)
    if not live:
        return f"{share:.0%}"
    eighths = round(share * BAR * 8)
    bar = "█" * (eighths // 8) + (" ▏▎▍▌▋▊▉"[eighths % 8] if eighths % 8 else "")
    return f"{bar:<{BAR}} {share:>4.0%}"


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
        self._rows_read: dict[str, tuple[dict[str, Any], RunRow]] = {}
        """By run id: the listing entry last read and its row, so that an entry read again is not made anew."""
        self._drawn: dict[str, tuple[RunRow, tuple[str | Text, ...]]] = {}
        """By run id: the row shown and its cells, as drawn."""
        self._drawn_order: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: name, id or state", id="filter")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="queue-note")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.query_one("#queue-note", Static).display = False
        table.focus()
        self.start_polling()

    def read(self) -> None:
        rows, known = [], self._rows_read  # one read at a time (PolledScreen): this thread alone uses it
        for entry in self.cd.deck.listing():
            held = known.get(entry["run_id"])
            if held is None or held[0] is not entry:
                held = known[entry["run_id"]] = (entry, RunRow.from_entry(entry))
            rows.append(held[1])
        if not get_current_worker().is_cancelled:
            self.post_message(RunsLoaded(rows))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.rows = message.rows
        self.show_rows(changes_only=True)

    def shown(self) -> list[RunRow]:
        words = self.query_one("#filter", Input).value.lower().split()
        rows = [r for r in self.rows if all(w in f"{r.name} {r.run_id} {r.state}".lower() for w in words)]
        return sorted(rows, key=SORT_KEYS[self.sort_by], reverse=self.reverse)

    def show_rows(self, *, changes_only: bool = False) -> None:
        """Draws the rows shown; ``changes_only``: only the cells that changed, when the same rows are shown
        in the same order and every cell still fits its column (else the table is drawn afresh)."""
        table = self.query_one(DataTable)
        rows = self.shown()
        if not (changes_only and self._redraw_changes(table, rows)):
            self._draw(table, rows)
        self.show_queue_note()
        self.sub_title = (
            f"{len(table.rows)} of {len(self.rows)} runs · sorted by {self.sort_by} · {time.strftime('%H:%M:%S')}"
        )

    def _draw(self, table: DataTable[Any], rows: list[RunRow]) -> None:
        selected = self.selected()
        table.clear()
        shown = [(row, cells(row, row.run_id in self.marked)) for row in rows]
        # Widths set here, from the cells: the table's own measuring waits for an idle moment, and a
        # frame drawn before it keeps the old widths (a marked name shown clipped until the next refresh).
        for i, column in enumerate(table.ordered_columns):
            column.auto_width = False
            column.width = max([cell_len(str(column.label))] + [_width(values[i]) for _, values in shown])
        for row, values in shown:
            table.add_row(*values, key=row.run_id)
        self._drawn = {row.run_id: (row, values) for row, values in shown}
        self._drawn_order = [row.run_id for row in rows]
        if selected is not None and selected in self._drawn:
            table.move_cursor(row=table.get_row_index(selected))

    def _redraw_changes(self, table: DataTable[Any], rows: list[RunRow]) -> bool:
        """Updates the cells that changed in place; False when that will not do (rows added, gone or moved, or
        a cell grown wider than its column)."""
        if [row.run_id for row in rows] != self._drawn_order:
            return False
        updates = []
        for row in rows:
            drawn_row, drawn = self._drawn[row.run_id]
            if (drawn_row is row or drawn_row == row) and row.ended_at is not None:
                continue  # the same ended run (a remote deck's rows are new each time): the same cells
            values = cells(row, row.run_id in self.marked)
            for column, old, new in zip(table.ordered_columns, drawn, values, strict=True):
                if old != new:
                    if _width(new) > column.width:
                        return False
                    updates.append((row.run_id, column.key, new))
            self._drawn[row.run_id] = (row, values)
        for run_id, key, value in updates:
            table.update_cell(run_id, key, value)
        return True

    def show_queue_note(self) -> None:
        """Why the selected run waits, and until when, on the line under the table; hidden when it does not wait."""
        run_id = self.selected()
        row = self._drawn[run_id][0] if run_id in self._drawn else None
        note = self.query_one("#queue-note", Static)
        note.display = row is not None and row.queue is not None
        if row is not None and row.queue is not None:
            q = row.queue
            words = queue_wait(q.text, q.expected_start)  # the reason as `clusterdeck show` says it
            said = f"{q.reason}: {words}" if q.reason and q.reason != q.text else words
            note.update(Text.assemble((row.name, "bold"), " waits: ", said))

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.show_queue_note()

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

    def marked_paths(self) -> list[str]:
        """The runs marked for comparison that are still listed, in the order they were marked."""
        return [r.path for run_id in self.marked for r in self.rows if r.run_id == run_id]

    def action_compare(self) -> None:
        paths = self.marked_paths()
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
        self.reverse = self.sort_by in ("id", "progress", "img/s", "best top-1", "elapsed")  # start: soonest first
        self.show_rows()
