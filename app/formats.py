"""How the front ends write durations (and nothing heavier: the CLI imports it at start)."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """``1:02:03``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
