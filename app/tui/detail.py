"""A run's detail: its state in a header, and live panels for logs, I/O, GPU memory, curves and staging.

One worker per screen follows the run (``jobs.tail``): files every ``POLL_S``, the state every
``STATE_S``, and posts what it found; handlers feed the panels. Nothing here blocks the UI.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from app.tui.messages import LogLines, NewRecords, RunUpdated
from app.tui.panels import CurvesPanel, LogPanel
from app.tui.runs import duration
from jobs.rundir import RunPaths
from jobs.status import RunView
from jobs.tail.live import LiveRun

POLL_S, STATE_S = 0.5, 2.0


class RunDetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Runs"),
        Binding("p", "follow", "Follow/pause"),
        Binding("slash", "search", "Search"),
        Binding("n", "next_rank", "Rank"),
        Binding("c", "cancel", "Cancel run"),
        Binding("r", "resume", "Resume"),
        Binding("k", "checkpoints", "Checkpoints"),
    ]

    def __init__(self, path: str) -> None:
        super().__init__()
        self.paths = RunPaths(Path(path))
        self.view: RunView | None = None
        self.live = LiveRun()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="summary")
        with TabbedContent(initial="log-tab"):
            with TabPane("Log", id="log-tab"):
                yield LogPanel(id="logs")
            with TabPane("I/O", id="io-tab"):
                yield CurvesPanel(id="io")
            with TabPane("GPU", id="gpu-tab"):
                yield CurvesPanel(id="gpu")
            with TabPane("Curves", id="curves-tab"):
                yield CurvesPanel(id="curves")
            with TabPane("Staging", id="stage-tab"):
                yield Static("no staging in this run (yet)", id="staging")
        yield Input(placeholder="search the log (enter: apply, empty: all lines)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.run_worker(self._follow, thread=True, exclusive=True, group="follow", exit_on_error=False)

    def _follow(self) -> None:
        from jobs.status import view_run
        from jobs.tail.run import RunLogs, RunMetrics

        worker = get_current_worker()
        logs, metrics = RunLogs(self.paths), RunMetrics(self.paths)
        checked = 0.0
        try:
            while not worker.is_cancelled:
                if time.monotonic() - checked >= STATE_S:
                    self.post_message(RunUpdated(view_run(self.paths)))
                    checked = time.monotonic()
                lines, records = logs.poll(), metrics.poll()
                if lines:
                    self.post_message(LogLines(lines))
                if records:
                    self.post_message(NewRecords(records))
                if not (logs.more or metrics.more):
                    time.sleep(POLL_S)
        finally:
            logs.close()
            metrics.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.name}: {event.worker.error}", severity="error", timeout=10)

    def on_run_updated(self, message: RunUpdated) -> None:
        self.view = message.view
        self.query_one("#summary", Static).update(self.summary())

    def on_log_lines(self, message: LogLines) -> None:
        self.query_one(LogPanel).add(message.lines)

    def on_new_records(self, message: NewRecords) -> None:
        io, gpu, curves = (self.query_one(f"#{name}", CurvesPanel) for name in ("io", "gpu", "curves"))
        for r in message.records:
            self.live.add(r)
            kind, where = r.get("kind"), f"{r.get('node', '')}/{r.get('rank', 0)}"
            if kind == "train":
                curves.add("loss", r["loss"])
                io.add("img/s", r["images_per_s"], title="images/s")
                io.add("wait", 100 * r["data_wait_fraction"], title="data wait", unit=" %", ceiling=100)
            elif kind in ("epoch", "evaluate") and "top1" in r:
                curves.add("top1", 100 * r["top1"], title="val top-1", unit=" %", ceiling=100)
                curves.add("top5", 100 * r["top5"], title="val top-5", unit=" %", ceiling=100)
            elif kind == "system":
                io.add(f"data {where}", r["data_mb_s"], title=f"data read {where}", unit=" MB/s")
                io.add(f"samples {where}", r["data_samples_s"], title=f"samples {where}", unit="/s")
                if "disk_read_mb_s" in r:
                    io.add(f"disk {r['node']}", r["disk_read_mb_s"], title=f"disk read {r['node']}", unit=" MB/s")
            elif kind == "gpu":
                name = f"GPU {r['node']}:{r['gpu']}"
                if "used_mb" in r:
                    gpu.add(name, r["used_mb"] / 1e3, title=f"{name} used", unit=" GB", ceiling=r["total_mb"] / 1e3)
                gpu.add(
                    f"{name} alloc", r["allocated_mb"] / 1e3, title=f"{name} allocated (rank {r['rank']})", unit=" GB"
                )
        if self.live.stage:
            self.query_one("#staging", Static).update(self.staging())
        self.query_one("#summary", Static).update(self.summary())

    def summary(self) -> Text:
        v = self.view
        if v is None:
            return Text("loading…")
        elapsed = duration((v.ended_at or time.time()) - v.created_at)
        train = next((s for s in v.steps if s.name == "train" and s.parts), None)
        eta = ""
        if train is not None:
            p = train.parts[0].progress
            left = self.live.eta_s(p.get("step", 0.0), p.get("steps_total", 0.0))
            eta = f" · ETA {duration(left)}" if left is not None else ""
        lines = [Text.assemble((f"{v.name}  {v.run_id}", "bold"), f" · {v.state} · elapsed {elapsed}{eta}")]
        for step in v.steps:
            nodes = sorted({p.node for p in step.parts if p.node})
            lines.append(
                Text(
                    f"{step.name}: {step.state} · attempt {step.attempt} of {len(step.attempts)} · "
                    f"jobs {', '.join(step.job_ids) or '-'} · nodes {', '.join(nodes) or '-'}"
                )
            )
        return Text("\n").join(lines)

    def staging(self) -> Text:
        rows = []
        for node, s in sorted(self.live.stage.items()):
            done = s["bytes_done"] / max(s["bytes_total"], 1)
            bar = "█" * int(30 * done) + "░" * (30 - int(30 * done))
            eta = f"ETA {duration(s['eta_s'])}" if s.get("eta_s") else ""
            rows.append(
                f"{node:<12} {bar} {done:6.1%}  {s['files_done']}/{s['files_total']} shards  "
                f"{s['mb_s']:.0f} MB/s  {eta}  (copied {s['copied']}, reused {s['reused']}, repaired {s['repaired']})"
            )
        return Text("\n".join(rows))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_follow(self) -> None:
        self.query_one(LogPanel).toggle_follow()

    def action_next_rank(self) -> None:
        self.query_one(LogPanel).next_rank()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(LogPanel).set_search(event.value)
        event.input.display = False

    def action_cancel(self) -> None:
        from jobs.submit import cancel_run

        def cancel() -> None:
            view = cancel_run(self.paths)
            self.app.call_from_thread(self.notify, f"run {view.run_id}: cancel requested")

        self.run_worker(cancel, thread=True, group="actions", exit_on_error=False)

    def action_resume(self) -> None:
        from jobs.submit import resume_run

        def resume() -> None:
            resumed = resume_run(self.paths)
            text = "resubmitted" if resumed is not None else "every step completed; nothing to resume"
            self.app.call_from_thread(self.notify, f"run {self.paths.run_id}: {text}")

        self.run_worker(resume, thread=True, group="actions", exit_on_error=False)

    def action_checkpoints(self) -> None:
        found = sorted(self.paths.checkpoints.glob("*.pt")) if self.paths.checkpoints.is_dir() else []
        text = "\n".join(
            f"{p.name}: {p.stat().st_size / 1e6:.1f} MB, {time.strftime('%H:%M:%S', time.localtime(p.stat().st_mtime))}"
            for p in found
        )
        self.notify(text or "no checkpoints yet", title=str(self.paths.checkpoints), timeout=10)
