"""A run's detail: its state in a header, and live panels for logs, I/O, GPU memory, curves and staging.

Two workers follow the run (``jobs.tail``): its files every ``POLL_S``, its state every
``STATE_S``; they post what they found, and handlers feed the panels (records folded in
``LiveRun``, drawn from their typed values on the charts of ``plots``). Nothing here blocks the UI.
The screen owns the charts' x axis (epochs or wall time, ``x`` toggles) and binds it down to them.
Everything goes through the app's deck: the run's directory may be on a login node, so its path
is only ever a name to hand the deck, never a file to touch here.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from clusterdeck.app.formats import duration
from clusterdeck.app.tui.messages import NewRun, RunData, RunUpdated, Trouble
from clusterdeck.app.tui.panels import LogPanel
from clusterdeck.app.tui.plots import AXES, PlotsPanel, Timeline, plot, why_empty
from clusterdeck.app.tui.screen import DeckScreen
from clusterdeck.app.watch import stage_text, train_progress
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.status import RunView
from clusterdeck.jobs.tail.access import read_all
from clusterdeck.jobs.tail.live import LiveRun

POLL_S, STATE_S = 0.5, 2.0


class RunDetailScreen(DeckScreen):
    BINDINGS = [
        Binding("escape", "back", "Runs"),
        Binding("p", "follow", "Follow/pause"),
        Binding("slash", "search", "Search"),
        Binding("n", "next_rank", "Rank"),
        Binding("c", "cancel", "Cancel run"),
        Binding("r", "resume", "Resume"),
        Binding("k", "checkpoints", "Checkpoints"),
        Binding("l", "clone", "Clone"),
        Binding("x", "x_axis", "Epochs/time"),
    ]
    x_axis: reactive[str] = reactive(AXES[0])

    def __init__(self, path: str) -> None:
        super().__init__()
        self.paths = RunPaths(Path(path))
        self.view: RunView | None = None
        self.live = LiveRun()
        self.timeline = Timeline()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="summary")
        with TabbedContent(initial="log-tab"):
            with TabPane("Log", id="log-tab"):
                yield LogPanel(id="logs")
            for tab, name in (("I/O", "io"), ("GPU", "gpu"), ("Curves", "curves")):
                with TabPane(tab, id=f"{name}-tab"):
                    yield PlotsPanel(self.timeline, id=name).data_bind(RunDetailScreen.x_axis)
            with TabPane("Staging", id="stage-tab"):
                yield Static("no staging records yet", id="staging")
        yield Input(placeholder="search the log (enter: apply, empty: all lines)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.ended = False
        self.trouble = ""
        self.cancel_asked = 0.0
        self.consumed = threading.Event()  # one batch of data in flight: the worker waits for the UI
        self.consumed.set()
        self.follow_files()
        self.follow_state()

    @work(thread=True, name="follow state", group="state", exclusive=True, exit_on_error=False)
    def follow_state(self) -> None:
        """The run's state every STATE_S, apart from the files: a slow sacct never holds up the log."""
        worker, deck = get_current_worker(), self.cd.deck
        while not worker.is_cancelled:
            try:
                view = deck.view(self.paths)
                self.ended = view.ended
                self.post_message(RunUpdated(view))
            except Exception as exc:
                self.post_message(Trouble(f"state of {self.paths.run_id}: {exc}"))
            for _ in range(int(STATE_S / 0.1)):
                if worker.is_cancelled:
                    return
                time.sleep(0.1)

    @work(thread=True, name="follow files", group="files", exclusive=True, exit_on_error=False)
    def follow_files(self) -> None:
        from clusterdeck.jobs.tail.run import RunLogs, RunMetrics

        worker, files = get_current_worker(), self.cd.deck.files
        logs, metrics = RunLogs(self.paths, access=files), RunMetrics(self.paths, access=files)
        try:
            while not worker.is_cancelled:
                if not self.consumed.wait(0.5):
                    continue
                try:
                    final = self.ended  # a run that ended: its partial last lines too
                    lines, records = logs.poll(final), metrics.poll(final)
                except Exception as exc:
                    self.post_message(Trouble(f"files of {self.paths.run_id}: {exc}"))
                    time.sleep(POLL_S)
                    continue
                if lines or records:
                    self.consumed.clear()
                    self.post_message(RunData(lines, records))
                if not (logs.more or metrics.more):
                    time.sleep(POLL_S)
        finally:
            logs.close()
            metrics.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.on_trouble(Trouble(f"{event.worker.name}: {event.worker.error}"))

    def on_trouble(self, message: Trouble) -> None:
        if message.text != self.trouble:
            self.trouble = message.text
            self.notify(message.text, severity="error", timeout=10, markup=False)

    def on_run_updated(self, message: RunUpdated) -> None:
        self.view = message.view
        self.query_one("#summary", Static).update(self.summary())
        self.say_why_empty()

    def say_why_empty(self) -> None:
        """Each tab without a chart (yet) says why, from what the run wrote and whether it ended."""
        ended = self.view is not None and self.view.ended
        for name, text in why_empty(self.live, ended).items():
            self.query_one(f"#{name}", PlotsPanel).say_why_empty(text)
        if not self.live.stage:
            self.query_one("#staging", Static).update(
                "no staging records: this run copied no shards to node-local disk"
                if ended
                else "no staging records yet"
            )

    def on_run_data(self, message: RunData) -> None:
        try:
            self.query_one(LogPanel).add(message.lines)
            self.add_records(message.records)
        finally:
            self.consumed.set()

    def add_records(self, records: list[dict[str, Any]]) -> None:
        io, gpu, curves = (self.query_one(f"#{name}", PlotsPanel) for name in ("io", "gpu", "curves"))
        for raw in records:
            record = self.live.add(raw)  # None: another version's or writer's, counted there, never fatal
            if record is not None:
                self.timeline.saw(record.time)
                plot(record, io, gpu, curves, self.timeline)
        if self.live.stage:
            self.query_one("#staging", Static).update(self.staging())
        self.query_one("#summary", Static).update(self.summary())
        self.say_why_empty()

    def summary(self) -> Text:
        v = self.view
        if v is None:
            return Text("loading…")
        elapsed = duration((v.ended_at or time.time()) - v.created_at)
        at, total, _, _ = train_progress(v, self.live)
        left = self.live.eta_s(at, total)
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
            done = s.bytes_done / max(s.bytes_total, 1)
            bar = "█" * int(30 * done) + "░" * (30 - int(30 * done))
            eta = f"ETA {duration(s.eta_s)}" if s.eta_s else ""
            rows.append(
                f"{node:<12} {bar} {done:6.1%}  {stage_text(s)}  {eta}  "
                f"(copied {s.copied}, reused {s.reused}, repaired {s.repaired})"
            )
        return Text("\n".join(rows))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_x_axis(self) -> None:
        self.x_axis = AXES[(AXES.index(self.x_axis) + 1) % len(AXES)]

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
        if time.monotonic() - self.cancel_asked > 5:  # a multi-day run is not cancelled by one stray key
            self.cancel_asked = time.monotonic()
            self.notify(f"press c again to cancel run {self.paths.run_id}", severity="warning")
            return
        self.cancel_asked = 0.0
        deck, paths = self.cd.deck, self.paths
        self.cd.start_action("cancel", lambda: f"run {deck.cancel(paths).run_id}: cancel requested")

    def action_resume(self) -> None:
        deck, paths = self.cd.deck, self.paths

        def resume() -> str:
            resumed = deck.resume(paths)
            return f"run {paths.run_id}: " + ("resubmitted" if resumed else "every step completed; nothing to resume")

        self.cd.start_action("resume", resume, warns=True)

    def action_clone(self) -> None:
        """The run's recorded spec in the new-run form, to change and submit as a new run."""
        self.read_spec()

    @work(thread=True, name="clone", group="clone", exclusive=True, exit_on_error=False)
    def read_spec(self) -> None:
        spec = self.paths.spec
        try:
            table = json.loads(read_all(self.cd.deck.files, str(spec)))
            if not isinstance(table, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{spec}: cannot read the run's spec ({exc})") from None
        self.post_message(NewRun(table, origin=f"clone of {self.paths.run_id}"))

    def action_checkpoints(self) -> None:
        folder, files = str(self.paths.checkpoints), self.cd.deck.files

        def listing() -> str:
            lines = []
            for path in files.list(folder, "*.pt"):  # the deck's files: the folder may be on a login node
                try:
                    handle, stat = files.open(path)  # FileAccess has no stat of a path: its open file's size
                except FileNotFoundError:  # replaced or removed since it was listed
                    continue
                handle.close()
                lines.append(f"{path.rsplit('/', 1)[-1]}: {stat.size / 1e6:.1f} MB")
            return f"{folder}\n" + ("\n".join(lines) or "no checkpoints yet")

        self.cd.start_action("checkpoints", listing)
