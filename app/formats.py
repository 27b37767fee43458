"""How the front ends write durations and times (and nothing heavier: the CLI imports it at start)."""

from __future__ import annotations

import time


def duration(seconds: float | None) -> str:
    """``1:02:03``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def when(ts: float) -> str:
    """A moment as local time to the minute: ``2025-01-31 14:05``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def elapsed(start: float, end: float | None) -> str:
    """The ``duration`` from ``start`` to ``end``, or to now while there is no end."""
    return duration((end or time.time()) - start)


def queue_wait(text: str, expected_start: float | None) -> str:
    """A job's wait in the queue: ``waiting behind jobs of higher priority; starts about 2025-01-31 14:05``, or
    ``…; start unknown`` when the scheduler gives no estimate."""
    return f"{text}; {'starts about ' + when(expected_start) if expected_start is not None else 'start unknown'}"
