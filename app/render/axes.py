"""A chart's axes: round tick values, and numbers written short with their unit (``15.1k/s``, ``459.9 MB/s``).

Written here rather than taken from a plotting library: the ticks are the classic 1-2-2.5-5 steps
(as matplotlib's ``MaxNLocator`` picks them) and the labels a few lines of ``format``; a library
for them would bring its own drawing (``chart`` draws) and its own import cost at the app's start.
"""

from __future__ import annotations

import math

STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
"""Tick spacings per decade: a step is one of these times a power of ten."""
SCALED = ("/s", "")
"""Units whose numbers take a k/M/G suffix (``15.1k/s``, ``1.2M``); a unit of its own (MB/s, GB, %) does not."""
BIGGER = {" MB/s": (" GB/s", 1e3), " MB": (" GB", 1e3), " GB": (" TB", 1e3)}
"""A unit and the next one up, and its factor: 1,234 MB/s reads as 1.23 GB/s."""


LIMIT = 1e15
"""Values beyond this are drawn at it: a diverged loss of 3e38 would otherwise make the axis a row of digits."""


def nice_step(span: float, intervals: int) -> float:
    """The smallest round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` in ``intervals`` or fewer."""
    raw = span / max(intervals, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    decade = 10 ** math.floor(math.log10(raw))
    return next(m * decade for m in STEPS if m * decade >= raw * (1 - 1e-9))


def nice_range(
    low: float, high: float, rows: int, *, fixed_low: float | None = None, fixed_high: float | None = None
) -> tuple[float, float, list[float]]:
    """An axis of ``rows`` rows from ``low`` to ``high``, widened to round ends (a step of about a row apart),
    and its ticks: both ends, and the round values between them, a row and a half apart or more. A fixed end is
    kept as it is (100 %, 0 for a rate). Equal ends are widened (by 10 %, or 1 around 0): a flat line is drawn."""
    low = fixed_low if fixed_low is not None else low
    high = fixed_high if fixed_high is not None else high
    low, high = max(low, -LIMIT), min(high, LIMIT)  # a diverged value (float32's max, 1e308): no overflow below
    if high - low <= max(abs(low), abs(high)) * 1e-9:  # equal, or equal but for float noise: widened
        pad = abs(low) * 0.1 or 1.0
        if fixed_low is not None and fixed_high is None:
            high = low + pad
        elif fixed_high is not None and fixed_low is None:
            low = high - pad
        else:
            low, high = low - pad, high + pad
    fine = nice_step(high - low, max(rows - 1, 1))
    if fixed_low is None:
        low = math.floor(low / fine + 1e-9) * fine
    if fixed_high is None:
        high = math.ceil(high / fine - 1e-9) * fine
    step = nice_step(high - low, max(int((rows - 1) / 1.5), 1))  # labels a row and a half apart or more
    inner = range(math.ceil(low / step + 1e-9), math.floor(high / step - 1e-9) + 1)
    ticks = [high, low, *(k * step for k in inner)]
    low, high = round(low, 12), round(high, 12)
    if high <= low:  # the rounding met the ends (a span of a few ulps): a flat line, drawn mid-height
        high = low + (abs(low) * 0.1 or 1.0)
    return low, high, [0.0 if abs(t) < step * 1e-9 else round(t, 12) for t in ticks]


def number(value: float, unit: str = "", digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits at most, trailing zeros dropped, and its unit: ``15.1k/s``,
    ``459.9 MB/s``, ``91.1 %``, ``2.041``. Never an exponent above 0.001: ``1.506e+04`` is what this replaces."""
    if unit in BIGGER and abs(value) >= BIGGER[unit][1]:
        bigger, factor = BIGGER[unit]
        return number(value / factor, bigger, digits)
    suffix = ""
    if unit in SCALED:
        for factor, letter in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= factor * (1 - 0.5 * 10**-digits):
                value, suffix = value / factor, letter
                break
    if value == 0:
        text = "0"
    elif abs(value) < 1e-3:
        text = f"{value:.{min(digits, 2)}g}"
    else:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return f"{text}{suffix}{unit}"


def tick_labels(ticks: list[float], unit: str = "") -> list[str]:
    """The ticks' labels, with as few digits as keep neighbours apart (11.5k and 11.55k, not 11.6k twice)."""
    for digits in range(3, 8):
        labels = [number(t, unit, digits) for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def clock(seconds: float) -> str:
    """Elapsed time on an axis: ``45s``, ``12m30s``, ``3h05m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    return f"{s // 3600}h{s // 60 % 60:02d}m"
