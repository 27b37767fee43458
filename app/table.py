"""The one way the CLI prints a table: columns padded to their widest cell, trailing blanks cut."""

from __future__ import annotations

from collections.abc import Container, Sequence


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
    widths = [max(floors[i], *(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        lines.append((indent + gap.join(cells)).rstrip())
    return lines


def print_table(
    rows: Sequence[Sequence[str]],
    *,
    right: Container[int] = (),
    min_widths: Sequence[int] = (),
    gap: str = "  ",
    indent: str = "",
) -> None:
    """Prints ``table_lines(rows, ...)``, one line each."""
    for line in table_lines(rows, right=right, min_widths=min_widths, gap=gap, indent=indent):
        print(line)
