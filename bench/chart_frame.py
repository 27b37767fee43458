"""What one frame of a detail chart costs: this project's braille chart against plotext drawing the same series.

Two series (a train loss of ``--points`` points, every train record of a long run kept, and a
val loss of one point per 100) at the sizes a chart has at 80×24 and at 120×36. For the
project: the chart's points on the epoch axis (``render.traces.Trace.points``) and ``render.chart.draw_chart``,
what ``TraceChart.render`` does per frame. For plotext (the engine of textual-plotext): the
same points through ``plotext``'s figure and ``Text.from_ansi``, what ``PlotextPlot.render``
does; skipped, with a note, where plotext is not installed (it is no dependency:
``pip install 'plotext<6'`` to compare). Each is timed over ``--seconds``; the ratio is
plotext's time over the project's.

    python bench/chart_frame.py [--points 4096] [--seconds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from collections.abc import Callable

from rich.text import Text

from clusterdeck.app.render.chart import Series, draw_chart
from clusterdeck.app.render.traces import Timeline, Trace

SIZES = {"80x24 (78x8)": (78, 8), "120x36 (118x14)": (118, 14)}
"""A chart's cells where a tab of two charts fills the terminal."""


def per_frame(draw: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``draw``, over ``seconds`` at least."""
    draw()
    frames, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or frames < 5:
        draw()
        frames += 1
    return elapsed / frames


def traces(points: int) -> tuple[Timeline, Trace, Trace]:
    timeline, train, val = Timeline(), Trace("train loss"), Trace("val loss")
    for step in range(points):
        epoch = step / 100
        loss = 2.3 / (1 + step / 50) + 0.05 * math.sin(step)
        timeline.add(1000.0 + step, epoch)
        train.add(1000.0 + step, epoch, loss)
        if step % 100 == 99:
            val.add(1000.5 + step, epoch, loss + 0.2)
    timeline.origin = 1000.0
    return timeline, train, val


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=4096, help="points of the train loss (4096: a chart's most)")
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    timeline, train, val = traces(args.points)
    has_plotext = importlib.util.find_spec("plotext") is not None
    print(f"two series, {len(train.values)} and {len(val.values)} points; ms per frame (mean over the window)")
    for name, (width, height) in SIZES.items():

        def ours(width: int = width, height: int = height) -> None:
            series = [Series(t.label, t.points("epoch", timeline)) for t in (train, val)]
            draw_chart("loss", series, width, height, x_min=0.0)

        mine = per_frame(ours, args.seconds)
        line = f"{name}: braille chart {1e3 * mine:.2f} ms"
        if has_plotext:
            import plotext

            def theirs(width: int = width, height: int = height) -> None:
                plt = plotext._figure._figure_class()  # textual-plotext's Plot is this class
                plt.plotsize(width, height)
                for t in (train, val):
                    xs, ys = zip(*t.points("epoch", timeline), strict=True)
                    plt.plot(xs, ys, label=t.label, marker="braille")
                plt.title("loss")
                Text.from_ansi(plt.build())

            other = per_frame(theirs, args.seconds)
            line += f", plotext {1e3 * other:.2f} ms: plotext/braille {other / mine:.1f}x"
        else:
            line += " (plotext not installed: pip install 'plotext<6' to compare)"
        print(line)


if __name__ == "__main__":
    main()
