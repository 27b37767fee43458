"""A screen that reads something every ``REFRESH_S`` in a thread worker, one read at a time."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from clusterdeck.app.tui.screen import DeckScreen


class PolledScreen(DeckScreen):
    """Calls ``read`` (in a thread) on mount, every ``REFRESH_S`` while on top, and on resume.

    A read still running when the next is due is not doubled (sacct or a slow controller can take
    longer than the refresh); a failing read is said once, until its message changes.
    """

    REFRESH_S: ClassVar[float] = 5.0
    WHAT: ClassVar[str] = "poll"
    """What a failed read is named in its notification."""

    def __init__(self) -> None:
        super().__init__()
        self.loading = False
        self.trouble = ""
        self.timer: Timer | None = None

    def read(self) -> None:
        """Runs in a worker thread: reads, then posts what it read as a message."""
        raise NotImplementedError

    def start_polling(self) -> None:
        self.load()
        self.timer = self.set_interval(self.REFRESH_S, self.load)

    def on_screen_suspend(self) -> None:
        if self.timer is not None:
            self.timer.pause()  # another screen is on top: it polls what it shows, this one rests

    def on_screen_resume(self) -> None:
        if self.timer is not None:
            self.timer.resume()
            self.load()

    def load(self) -> None:
        if self.loading:
            return
        self.loading = True
        self.poll()

    @work(thread=True, name="poll", group="poll", exclusive=False, exit_on_error=False)
    def poll(self) -> None:
        self.read()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "poll" and event.state in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            self.loading = False
        if event.state == WorkerState.ERROR and str(event.worker.error) != self.trouble:
            self.trouble = str(event.worker.error)
            self.notify(f"{self.WHAT}: {event.worker.error}", severity="error", timeout=10, markup=False)
