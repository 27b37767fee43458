"""The one way the CLI prints a table: columns padded to their widest cell, trailing blanks cut."""

from __future__ import annotations

from collections.abc import Container, Sequence
from itertools import repeat


def table_lines(
    rows: Sequence[Sequence[str]],
    *,
    right: Container[int] = (),
    min_widths: Sequence[int] = (),
    gap: str = "  ",
    indent: str = "",
) -> list[str]:
    """``rows`` as aligned lines: the columns in ``right`` aligned to the right (numbers), the others to the left.

    A column is as wide as its widest cell, or its entry in ``min_widths`` where that is wider (fixed
    layouts such as ``show``'s, the same from one table to the next). Cells are ``gap`` apart; every
    line starts with ``indent``.
    """
    if not rows:
        return []
    floors = [*min_widths, *[0] * len(rows[0])]
    columns = list(zip(*rows, strict=True))  # strict: rows of different lengths are a ValueError
    widths = [max(floor, *map(len, column)) for floor, column in zip(floors, columns, strict=False)]
    # padded a column at a time, with str's own methods: a listing of 100,000 runs is this table (bench/ls.py)
    padded = [
        list(map(str.rjust if i in right else str.ljust, column, repeat(width)))
        for i, (column, width) in enumerate(zip(columns, widths, strict=True))
    ]
    lines = map(gap.join, zip(*padded, strict=True))
    if indent:
        lines = (indent + line for line in lines)
    return list(map(str.rstrip, lines))


def print_table(
    rows: Sequence[Sequence[str]],
    *,
    right: Container[int] = (),
    min_widths: Sequence[int] = (),
    gap: str = "  ",
    indent: str = "",
) -> None:
    """Prints ``table_lines(rows, ...)``, one line each (in one write)."""
    lines = table_lines(rows, right=right, min_widths=min_widths, gap=gap, indent=indent)
    if lines:
        print("\n".join(lines))
