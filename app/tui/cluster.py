"""The cluster screen: partitions with idle/total nodes and GPUs, and the user's jobs.

A thread worker asks the app's deck (one sinfo, one squeue, here or on the login node) every
``REFRESH_S`` and posts what it read; the handler fills the tables. Without SLURM the status
line says so.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker

from clusterdeck.app.tui.messages import ClusterLoaded
from clusterdeck.app.tui.polled import PolledScreen
from clusterdeck.jobs.cluster import ClusterView, Partition, QueuedJob

PARTITION_COLUMNS = ("partition", "state", "nodes idle/total", "GPUs idle/total")
NAME_WIDTH = 24  # so that at 80 columns the state and partition stay in view
JOB_COLUMNS = ("id", "name", "state", "partition", "elapsed", "limit", "nodes", "reason/nodelist")


def partition_cells(p: Partition) -> tuple[str, ...]:
    gpus = f"{p.gpus_idle}/{p.gpus_total}" if p.gpus_total else "-"
    return (p.name + ("*" if p.default else ""), p.state, f"{p.nodes_idle}/{p.nodes_total}", gpus)


def job_cells(j: QueuedJob) -> tuple[str, ...]:
    name = j.name if len(j.name) <= NAME_WIDTH else j.name[: NAME_WIDTH - 1] + "…"
    return (j.job_id, name, j.state, j.partition, j.elapsed, j.time_limit, str(j.nodes), j.reason_or_nodelist)


class ClusterScreen(PolledScreen):
    BINDINGS = [
        Binding("escape", "back", "Runs"),
        Binding("r", "reload", "Refresh"),
    ]

    REFRESH_S = 10.0
    WHAT = "cluster view"

    def __init__(self) -> None:
        super().__init__()
        self.view: ClusterView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("asking sinfo and squeue…", id="cluster-status", markup=False)
        yield DataTable(id="partitions", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="my-jobs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "cluster"
        partitions, queue = self.query_one("#partitions", DataTable), self.query_one("#my-jobs", DataTable)
        partitions.border_title = "partitions (* default)"
        queue.border_title = "my jobs"
        for name in PARTITION_COLUMNS:
            partitions.add_column(name, key=name)
        for name in JOB_COLUMNS:
            queue.add_column(name, key=name)
        queue.focus()
        self.start_polling()

    def read(self) -> None:
        view = self.cd.deck.cluster()
        if not get_current_worker().is_cancelled:
            self.post_message(ClusterLoaded(view))

    def on_cluster_loaded(self, message: ClusterLoaded) -> None:
        self.view = message.view
        self.fill(
            self.query_one("#partitions", DataTable), [(p.name, partition_cells(p)) for p in message.view.partitions]
        )
        self.fill(self.query_one("#my-jobs", DataTable), [(j.job_id, job_cells(j)) for j in message.view.jobs])
        status = self.query_one("#cluster-status", Static)
        status.set_class(bool(message.view.error), "error")
        if message.view.error:
            status.update(message.view.error)
        else:
            jobs = len(message.view.jobs)
            status.update(
                f"{time.strftime('%H:%M:%S')} · {len(message.view.partitions)} partitions · "
                f"{jobs} job{'s' * (jobs != 1)} · every {self.REFRESH_S:g} s, r now"
            )

    def fill(self, table: DataTable[Text], rows: list[tuple[str, tuple[str, ...]]]) -> None:
        """Replace the rows, keeping the cursor on the same key when it is still there."""
        selected = None
        if table.row_count:
            selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        for key, cells in rows:
            table.add_row(*(Text(c) for c in cells), key=key)  # Text: a job's name is not markup
        if selected is not None and selected in {key for key, _ in rows}:
            table.move_cursor(row=table.get_row_index(selected))

    def action_reload(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()
