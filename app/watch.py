"""How ``clusterdeck watch`` shows a run: a live screen on a terminal, plain lines otherwise (logs, CI, pipes).

On a terminal tall enough, the loss and the val accuracy are charted under the live view, by epoch
(``Charts``), as the app's Curves tab draws them."""

from __future__ import annotations

import math
import time
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from clusterdeck.app.formats import duration
from clusterdeck.app.render.axes import number
from clusterdeck.app.render.chart import Series, render_chart
from clusterdeck.app.render.traces import Timeline, Trace
from clusterdeck.jobs.status import RunView
from clusterdeck.jobs.tail.live import LiveRun
from clusterdeck.jobs.tail.records import (
    Epoch,
    Evaluate,
    Gpu,
    MetricRecord,
    Progress,
    Stage,
    Train,
    Validation,
    WithExtraFigures,
)

REDRAW_S = 0.25
GB = 1e9
CHART_ROWS = 10
"""A chart's rows at least: where the terminal has fewer to spare under the live view, no chart is drawn."""
CHART_UNITS = {"loss": "", "val accuracy": " %"}


def _part_progress(view: RunView, step: str) -> Progress:
    for s in view.steps:
        if s.name == step and s.parts:
            return Progress.of(s.parts[0].progress)
    return Progress()


def train_progress(view: RunView, live: LiveRun) -> tuple[float, float, float, float]:
    """(step, steps_total, epoch, epochs): the status's figures, or the last train record's if newer."""
    p, t = _part_progress(view, "train"), live.train
    step = max(p.step or 0.0, float(t.step) if t else 0.0)
    epoch = max(p.epoch or 0.0, t.epoch if t else 0.0)
    return step, p.steps_total or 0.0, epoch, p.epochs or 0.0


def render(view: RunView, live: LiveRun) -> RenderableType:
    elapsed = (view.ended_at or time.time()) - view.created_at
    header = Text.assemble(
        (f"run {view.run_id}", "bold"),
        f"  {view.name}  ",
        (view.state, _state_style(view.state)),
        f"  elapsed {duration(elapsed)}  ",
        " ".join(f"{s.name}:{s.state}" for s in view.steps),
    )
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for run_step in view.steps:
        for part in run_step.parts:
            p = Progress.of(part.progress)
            if run_step.name == "shard" and p.shards_total:
                done = p.shards_done or 0.0
                grid.add_row(
                    f"shard {part.part}",
                    _bar(done, p.shards_total),
                    f"{int(done)}/{int(p.shards_total)} shards  {p.mb_per_s or 0:.0f} MB/s",
                )
    for node, s in sorted(live.stage.items()):
        grid.add_row(f"stage {node}", _bar(s.bytes_done, s.bytes_total), f"{stage_text(s)}  ETA {duration(s.eta_s)}")
    step, steps_total, epoch, epochs = train_progress(view, live)
    if steps_total:
        grid.add_row(
            "train steps",
            _bar(step, steps_total),
            f"{int(step)}/{int(steps_total)}  ETA {duration(live.eta_s(step, steps_total))}",
        )
        grid.add_row("epochs", _bar(epoch, epochs), f"{epoch:.2f}/{int(epochs)}")
    if live.train:
        grid.add_row("", "", train_text(live.train))
    if live.epoch:
        grid.add_row("", "", f"{validation_text(live.epoch)}  (epoch {_epoch_of(live.epoch)})")
    for (node, rank), s in live.current(live.system):
        text = (
            f"CPU {s.cpu_pct:.0f}%  RSS {s.rss_mb / 1e3:.1f} GB  read {s.read_mb_s:.0f} MB/s  "
            f"data {s.data_mb_s:.1f} MB/s {s.data_samples_s:.0f} samples/s"
        )
        if s.node_wide:  # local rank 0's; a figure it could not read shows as "-"
            text += (
                f"  | node disk r {_figure(s.disk_read_mb_s, '.0f')} w {_figure(s.disk_write_mb_s, '.0f')} MB/s  "
                f"net rx {_figure(s.net_rx_mb_s, '.1f')} tx {_figure(s.net_tx_mb_s, '.1f')} MB/s"
            )
        grid.add_row(f"{node} rank {rank}", "", text)
    for (node, rank, gpu), g in live.current(live.gpus):
        if g.used_mb is not None and g.total_mb is not None:
            bar: RenderableType = _bar(g.used_mb, g.total_mb)
            text = f"util {g.util_pct:.0f}%  " if g.util_pct is not None else ""
        else:
            bar, text = Text(""), ""
        text += f"allocated {g.allocated_mb / 1e3:.1f}  {gpu_memory_text(g)}  peak {g.peak_mb / 1e3:.1f} GB"
        grid.add_row(f"GPU {node}:{gpu} (rank {rank})", bar, text)
    return Group(header, grid)


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _epoch_of(record: Epoch | Evaluate) -> str:
    return str(record.epoch) if isinstance(record, Epoch) else "-"


def validation_text(v: Validation) -> str:
    """``top-1 71.20%  top-5 90.10%  val loss 1.2345``, then a script's own figures; what the record lacks (a
    user's script may log top-1 alone) is left out, not shown as 0."""
    parts = [f"{name} {format(value, spec)}" for name, value, spec in (
        ("top-1", v.top1, ".2%"), ("top-5", v.top5, ".2%"), ("val loss", v.val_loss, ".4f")) if value is not None
    ]  # fmt: skip
    if isinstance(v, WithExtraFigures):
        parts += [f"{name} {value:.4g}" for name, value in v.extra_figures().items()]
    return "  ".join(parts) or "no figures"


def train_text(t: Train) -> str:
    """``loss 1.2345  1200 img/s  data wait 3%  lr 0.05``: the loader's figures only where the record has them (the
    built-in trainer's always do; a script's ``clusterdeck.log`` may give the loss alone), then its own figures."""
    given = t.model_fields_set
    parts = [f"loss {t.loss:.4f}"]
    if "images_per_s" in given:
        parts.append(f"{t.images_per_s:.0f} img/s")
    if "data_wait_fraction" in given:
        parts.append(f"data wait {t.data_wait_fraction:.0%}")
    if "lr" in given:
        parts.append(f"lr {t.lr:.3g}")
    parts += [f"{name} {value:.4g}" for name, value in t.extra_figures().items()]
    return "  ".join(parts)


def gpu_memory_text(g: Gpu) -> str:
    """Torch's reserved memory beside NVML's used, and the gap: what nvJPEG, NCCL, the CUDA context and other
    processes hold, which no allocator figure shows: ``reserved 12.0  used 14.3/80.0 (+2.3 outside torch)``."""
    text = f"reserved {g.reserved_mb / 1e3:.1f}"
    if g.used_mb is not None and g.total_mb is not None:
        outside = (g.used_mb - g.reserved_mb) / 1e3
        text += f"  used {g.used_mb / 1e3:.1f}/{g.total_mb / 1e3:.1f} ({outside:+.1f} outside torch)"
    return text


def stage_text(s: Stage) -> str:
    """A ``stage`` record's progress: ``1.20/2.25 GB  12/23 shards  950 MB/s``."""
    return (
        f"{s.bytes_done / GB:.2f}/{s.bytes_total / GB:.2f} GB  {s.files_done}/{s.files_total} shards  {s.mb_s:.0f} MB/s"
    )


def _bar(done: float, total: float) -> ProgressBar:
    return ProgressBar(total=max(total, 1e-9), completed=min(done, total), width=28)


def _state_style(state: str) -> str:
    return {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "REQUEUED": "yellow"}.get(state, "red")


class Charts:
    """The loss (train and val) and the val accuracy (top-1, top-5) by epoch, kept from every record as it comes."""

    def __init__(self) -> None:
        self.timeline = Timeline()  # empty: every point here has its epoch
        self.traces: dict[str, dict[str, Trace]] = {title: {} for title in CHART_UNITS}

    def add(self, record: MetricRecord) -> None:
        if isinstance(record, Train):
            self._add("loss", "train loss", record.epoch, record.loss)
        elif isinstance(record, Epoch):
            if record.val_loss is not None:
                self._add("loss", "val loss", record.epoch, record.val_loss)
            for name, value in (("top-1", record.top1), ("top-5", record.top5)):
                if value is not None:
                    self._add("val accuracy", name, record.epoch, 100 * value)

    def _add(self, chart: str, label: str, epoch: float, value: float) -> None:
        if math.isfinite(value):  # a NaN loss is in the log; the chart keeps its scale
            self.traces[chart].setdefault(label, Trace(label)).add(0.0, epoch, value)

    def under(self, body: RenderableType, console: Console) -> RenderableType:
        """``body``, and under it as many of the charts with points as the terminal's height leaves room for."""
        charts = [title for title, traces in self.traces.items() if traces]
        spare = console.size.height - len(console.render_lines(body, console.options, pad=False)) - 1
        shown = charts[: max(spare // CHART_ROWS, 0)]
        return Group(body, *(self.chart(title, console.size.width, spare // len(shown)) for title in shown))

    def chart(self, title: str, width: int, height: int) -> Text:
        unit = CHART_UNITS[title]
        series = [Series(f"{t.label} {number(t.values[-1], unit)}", t.points("epoch", self.timeline))
                  for t in self.traces[title].values()]  # fmt: skip
        return render_chart(title, series, width, height, unit=unit, x_min=0.0)


class Screen:
    """A live screen, redrawn at most every ``REDRAW_S``; the last frame stays on the terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.drawn = 0.0
        self.last: tuple[RunView, LiveRun] | None = None
        self.charts = Charts()

    def frame(self, view: RunView, live: LiveRun) -> RenderableType:
        return self.charts.under(render(view, live), self.console)

    def __enter__(self) -> Screen:
        self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.last is not None:
            self.live.update(self.frame(*self.last), refresh=True)
        self.live.stop()

    def record(self, record: MetricRecord, view: RunView) -> None:
        self.charts.add(record)

    def show(self, view: RunView, live: LiveRun) -> None:
        self.last = (view, live)
        if time.monotonic() - self.drawn >= REDRAW_S:
            self.live.update(self.frame(view, live), refresh=True)
            self.drawn = time.monotonic()


class LineReporter:
    """One line per train, epoch, evaluate and stage record, and per change of a step's state."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.states: dict[str, str] = {}
        self.view: RunView | None = None

    def __enter__(self) -> LineReporter:
        return self

    def __exit__(self, *_: object) -> None:
        if self.view is not None:
            self._print(f"run {self.view.run_id} {self.view.state}")

    def record(self, record: MetricRecord, view: RunView) -> None:
        if isinstance(record, Train):
            live = LiveRun(train=record)
            step, total, _, epochs = train_progress(view, live)
            where = f"step {record.step}/{int(total)}" if total else f"step {record.step}"
            where += f" (epoch {record.epoch:.2f}/{int(epochs)})" if epochs else f" (epoch {record.epoch:.2f})"
            eta = f"  ETA {duration(live.eta_s(step, total))}" if total else ""
            self._print(f"train {where}  {train_text(record)}{eta}")
        elif isinstance(record, Epoch | Evaluate):
            where = f"epoch {record.epoch}" if isinstance(record, Epoch) else "evaluate"
            self._print(f"{where}: {validation_text(record)}")
        elif isinstance(record, Stage):
            self._print(f"stage {record.node}: {stage_text(record)}")

    def show(self, view: RunView, live: LiveRun) -> None:
        self.view = view
        for step in view.steps:
            if self.states.get(step.name) != step.state:
                self.states[step.name] = step.state
                self._print(f"{step.name}: {step.state}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)
