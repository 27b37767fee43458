"""The CLI as commands: every module of ``app.commands`` is listed once, and the one table printer's layout."""

from __future__ import annotations

import argparse
import pkgutil

import clusterdeck.app.commands
from clusterdeck.app.cli import COMMANDS, build_parser
from clusterdeck.app.table import table_lines


def test_every_command_module_is_listed_once_and_parses_as_its_name() -> None:
    modules = {m.name for m in pkgutil.iter_modules(clusterdeck.app.commands.__path__)} - {"base"}
    assert sorted(c.__name__.rsplit(".", 1)[1] for c in COMMANDS) == sorted(modules)  # type: ignore[attr-defined]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [c.NAME for c in COMMANDS]


def test_columns_pad_to_the_widest_cell_or_their_minimum() -> None:
    rows = [["ID", "LOSS", "NOTE"], ["a", "0.5", ""], ["bbb", "12.25", "x"]]
    assert table_lines(rows) == ["ID   LOSS   NOTE", "a    0.5", "bbb  12.25  x"]
    assert table_lines(rows, right=range(1, 3)) == ["ID    LOSS  NOTE", "a      0.5", "bbb  12.25     x"]
    assert table_lines(rows, min_widths=(4,), gap=" ", indent="  ") == [
        "  ID   LOSS  NOTE",
        "  a    0.5",
        "  bbb  12.25 x",
    ]
    assert table_lines([]) == []
