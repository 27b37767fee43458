"""The run detail's charts: which record's figures go on which chart, their histories, and the x axis.

``PlotsPanel`` is one tab's charts (I/O, GPU, curves), made as their first value arrives and
fed by ``plot``; each chart keeps its series' points (``Trace``) and draws them at its own
size (``chart``) only while it is on screen. The x axis is the run's progress in epochs
(what a train record says; telemetry, which has a time only, is placed by the run's
``Timeline``) or the wall time since its first record; the screen owns which, and binds it
down to its panels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from clusterdeck.app.render.axes import clock, number
from clusterdeck.app.render.chart import Series
from clusterdeck.app.render.traces import Timeline, Trace
from clusterdeck.app.tui.chart import LineChart
from clusterdeck.jobs.tail.live import LiveRun
from clusterdeck.jobs.tail.records import Epoch, Evaluate, Gpu, MetricRecord, System, Train

AXES = ("epoch", "time")
MIN_ROWS = 7
"""A chart's rows at least (title, five plot rows, x axis): where the tab's charts need more, it scrolls."""


class TraceChart(LineChart):
    """A chart of traces, drawn on the panel's x axis; each series' legend ends with its latest value."""

    def __init__(self, title: str, unit: str, timeline: Timeline, *, y_min: float | None, y_max: float | None) -> None:
        super().__init__(title, unit=unit)
        self.timeline, self.y_min, self.y_max = timeline, y_min, y_max
        self.traces: dict[str, Trace] = {}
        self.axis = AXES[0]
        self.margin = 0
        """Its y labels' width: the widest of its panel's, so that the charts' x axes line up."""

    def add(self, key: str, label: str, time: float, epoch: float | None, value: float) -> None:
        trace = self.traces.get(key)
        if trace is None:
            trace = self.traces[key] = Trace(label)
        trace.add(time, epoch, value)
        self.refresh()

    def render(self) -> Text:
        drawn = super().render()
        if isinstance(self.parent, PlotsPanel):
            self.parent.line_up()
        return drawn

    def current_series(self) -> Sequence[Series]:
        return [Series(f"{t.label} {number(t.values[-1], self.unit)}", t.points(self.axis, self.timeline))
                for t in self.traces.values()]  # fmt: skip

    def chart_options(self) -> dict[str, Any]:
        on_time = self.axis == "time"
        return {
            "unit": self.unit,
            "x_label": "wall time" if on_time else "epoch",
            "x_fmt": clock if on_time else None,
            "x_min": 0.0,
            "x_max": self.timeline.newest - self.timeline.origin if on_time else self.timeline.last_epoch_seen,
            "y_min": self.y_min,
            "y_max": self.y_max,
            "margin": self.margin,
            "empty": "no point during training yet (x: by wall time)" if not on_time else "no data yet",
        }


class PlotsPanel(VerticalScroll):
    """A tab's charts, one per kind of figure, in arrival order; a line saying why while there is none."""

    x_axis: reactive[str] = reactive(AXES[0])

    def __init__(self, timeline: Timeline, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeline = timeline
        self.charts: dict[str, TraceChart] = {}
        self.why = ""

    def compose(self) -> ComposeResult:
        yield Static("", classes="plots-empty")

    def add(
        self,
        chart: str,
        key: str,
        value: float,
        r: MetricRecord,
        epoch: float | None = None,
        *,
        unit: str = "",
        label: str = "",
        y_min: float | None = 0.0,
        y_max: float | None = None,
        title: str = "",
    ) -> None:
        """Adds ``value`` of record ``r`` to the series ``key`` of the chart ``chart`` (made if new, titled ``chart``
        or ``title``), on the axis from ``y_min`` (0: a rate, memory; None: from the lowest value) to ``y_max``."""
        if not math.isfinite(value):  # a NaN loss shows in the log, highlighted; the chart keeps its scale
            return
        widget = self.charts.get(chart)
        if widget is None:
            widget = self.charts[chart] = TraceChart(chart, unit, self.timeline, y_min=y_min, y_max=y_max)
            widget.axis = self.x_axis
            self.query_one(".plots-empty").display = False
            self.mount(widget)
            self.fit()
        if title:
            widget.chart_title = title
        widget.add(key, label or key, r.time, epoch, value)

    def say_why_empty(self, text: str) -> None:
        if text != self.why:
            self.why = text
            self.query_one(".plots-empty", Static).update(text)

    def fit(self) -> None:
        """The charts share the panel's height, ``MIN_ROWS`` each at least."""
        if not self.charts:
            return
        each, spare = divmod(self.size.height, len(self.charts))
        for k, chart in enumerate(self.charts.values()):
            rows = max(MIN_ROWS, each + (k < spare))
            if chart.styles.height is None or chart.styles.height.value != rows:
                chart.styles.height = rows

    def line_up(self) -> None:
        """Gives every chart the width of the widest y labels drawn, and redraws those it changes."""
        width = max(chart.label_width for chart in self.charts.values())
        for chart in self.charts.values():
            if chart.margin != width:
                chart.margin = width
                chart.refresh()

    def on_resize(self) -> None:
        self.fit()

    def watch_x_axis(self, axis: str) -> None:
        for chart in self.charts.values():
            chart.axis = axis
            chart.refresh()


def plot(r: MetricRecord, io: PlotsPanel, gpu: PlotsPanel, curves: PlotsPanel, timeline: Timeline) -> None:
    """Puts a record's figures on their charts: loss and accuracy, throughput, data read and wait, GPU memory."""
    where = f"{r.node}/{r.rank}"
    if isinstance(r, Train):
        timeline.add(r.time, r.epoch)
        curves.add("loss", "train", r.loss, r, r.epoch, y_min=None, label="train loss")
        given = r.model_fields_set  # a script's records may lack the loader's figures: no flat zero curve
        if "images_per_s" in given:
            io.add("throughput", "images", r.images_per_s, r, r.epoch, unit="/s", label="images (all ranks)")
        if "data_wait_fraction" in given:
            io.add("data wait", "wait", 100 * r.data_wait_fraction, r, r.epoch, unit=" %", label="waiting on data")
        for key, value in r.extra_figures().items():  # a script's own figures (clusterdeck.log)
            curves.add(key, key, value, r, r.epoch, y_min=None)
    elif isinstance(r, Epoch | Evaluate):
        if isinstance(r, Epoch):
            timeline.add(r.time, float(r.epoch))
        at = float(r.epoch) if isinstance(r, Epoch) else timeline.last_epoch  # evaluate: after the last epoch
        if r.val_loss is not None:
            curves.add("loss", "val", r.val_loss, r, at, y_min=None, label="val loss")
        for key, value in (("top-1", r.top1), ("top-5", r.top5)):
            if value is not None:
                curves.add("val accuracy", key, 100 * value, r, at, unit=" %", y_min=None)
        for key, value in (r.extra_figures() if isinstance(r, Epoch) else {}).items():
            curves.add(f"{key} (per epoch)", key, value, r, at, y_min=None)
    elif isinstance(r, System):
        io.add("throughput", f"samples {where}", r.data_samples_s, r, unit="/s", label=f"loader {where}")
        io.add("data read", f"loader {where}", r.data_mb_s, r, unit=" MB/s")
        if r.disk_read_mb_s is not None:
            io.add("data read", f"disk {r.node}", r.disk_read_mb_s, r, unit=" MB/s")
    elif isinstance(r, Gpu):
        chart = f"GPU {r.node}:{r.gpu} memory"  # up to what is used, not the device's total: the gaps stay visible
        if r.used_mb is not None:  # NVML's used beside torch's reserved: the gap is nvJPEG, NCCL, the CUDA context…
            of = f"{chart} of {number(r.total_mb / 1e3, ' GB')}" if r.total_mb is not None else ""
            gpu.add(chart, "used", r.used_mb / 1e3, r, unit=" GB", title=of)
        if "reserved_mb" in r.model_fields_set:  # torch's cache: a script's records, read from outside, have none
            gpu.add(chart, f"reserved {r.rank}", r.reserved_mb / 1e3, r, unit=" GB", label=f"reserved (rank {r.rank})")
        gpu.add(chart, f"allocated {r.rank}", r.allocated_mb / 1e3, r, unit=" GB", label=f"allocated (rank {r.rank})")
        if r.util_pct is not None:
            gpu.add("GPU utilisation", f"{r.node}:{r.gpu}", r.util_pct, r, unit=" %", y_max=100.0)


def why_empty(live: LiveRun, ended: bool) -> dict[str, str]:
    """What each tab says while it has no chart: why there is none, from what the run wrote so far."""
    telemetry = bool(live.system)
    training = live.train is not None or telemetry
    if ended:
        gpu = "no GPU records: this run trained on CPU" if training else "no GPU records: this run never trained"
        io = "no I/O records: this run never trained"
        curves = "no train records: this run never trained"
    else:
        gpu = "no GPU records: this run trains on CPU" if telemetry else "no GPU records yet: training has not begun"
        io = "no I/O records yet: training has not begun"
        curves = "no train records yet: the first comes after train.log_every_steps steps"
    return {"gpu": gpu, "io": io, "curves": curves}
