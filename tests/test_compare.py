"""Comparing runs: spec differences, per-epoch curves, the chart, ``clusterdeck diff`` and the compare screen."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Static

from clusterdeck.app.render.chart import render_chart
from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.chart import LineChart, Series, colour
from clusterdeck.app.tui.compare import CompareScreen
from clusterdeck.app.tui.runs import RunsScreen
from clusterdeck.jobs.compare import ABSENT, epoch_curves, format_value, spec_differences
from clusterdeck.jobs.rundir import RunPaths
from tests.conftest import run_cli, train_section, until

# --- spec differences --------------------------------------------------------------------------


def test_spec_differences_flatten_nested_tables_and_keep_only_what_differs() -> None:
    a: dict[str, Any] = {
        "name": "a",
        "shard": None,
        "train": {"lr": 0.1, "epochs": 2, "stage": {"mode": "none", "keep": False}, "resources": {"setup": []}},
    }
    b: dict[str, Any] = {
        "name": "b",
        "shard": {"seed": 3},
        "train": {"lr": 0.2, "epochs": 2, "stage": {"mode": "before", "keep": False}, "resources": {"setup": ["x"]}},
    }
    assert spec_differences([a, b]) == [
        ("name", ["a", "b"]),
        ("shard", [None, ABSENT]),  # a table in one spec, null in the other: both sides show
        ("shard.seed", [ABSENT, 3]),
        ("train.lr", [0.1, 0.2]),
        ("train.resources.setup", [[], ["x"]]),
        ("train.stage.mode", ["none", "before"]),
    ]


def test_spec_differences_of_three_specs_with_absent_keys_and_typed_values() -> None:
    specs: list[dict[str, Any]] = [
        {"same": 1, "only_two": "x", "n": 1, "flag": True},
        {"same": 1, "only_two": "x", "n": 1.0, "flag": 1},
        {"same": 1, "n": 1, "flag": True},
    ]
    assert spec_differences(specs) == [
        ("flag", [True, 1, True]),  # true is not 1
        ("n", [1, 1.0, 1]),  # nor is 1.0 the same setting as 1
        ("only_two", ["x", "x", ABSENT]),
    ]
    assert spec_differences([{"a": {"b": 1}}, {"a": {"b": 1}}]) == []


def test_format_value_tells_absent_from_null() -> None:
    assert [format_value(v) for v in (ABSENT, None, "resnet18", 0.05, True, ["a", 1])] == [
        "—",
        "null",
        "resnet18",
        "0.05",
        "true",
        '["a", 1]',
    ]


# --- curves from metrics.jsonl -----------------------------------------------------------------


def test_epoch_curves_take_the_newest_attempt_of_each_epoch(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    assert epoch_curves(paths) == {}  # no metrics yet

    def rec(kind: str, attempt: int, **values: Any) -> str:
        return json.dumps({"time": 0.0, "kind": kind, "node": "n", "rank": 0, "attempt": attempt, **values})

    lines = [
        rec("train", 1, epoch=0.5, loss=4.0),
        rec("train", 1, epoch=1.0, loss=2.0),
        rec("epoch", 1, epoch=1, top1=0.1, top5=0.5, val_loss=3.0, train_loss=2.5),
        rec("system", 1, data_mb_s=1.0),
        rec("train", 1, epoch=1.5, loss=9.0),  # attempt 1 died in epoch 2 ...
        rec("train", 2, epoch=1.5, loss=1.0),  # ... attempt 2 redid it
        rec("train", 2, epoch=2.0, loss=3.0),
        rec("epoch", 2, epoch=2, top1=0.3, top5=0.7, val_loss=1.5),  # no train_loss: the mean of attempt 2's
        rec("train", 2, epoch=2.25, loss=5.0),  # epoch 3 still running
        "not json",
        '{"kind": "epoch", "epoch": 3, "top1": 0.9',  # half-written last line
    ]
    paths.metrics.write_text("\n".join(lines))
    assert epoch_curves(paths) == {
        "train_loss": [(1, 2.5), (2, 2.0), (3, 5.0)],
        "top1": [(1, 0.1), (2, 0.3)],
        "top5": [(1, 0.5), (2, 0.7)],
        "val_loss": [(1, 3.0), (2, 1.5)],
    }
    with paths.metrics.open("a") as f:  # a later attempt's record of the same epoch replaces the earlier one
        f.write("\n" + rec("epoch", 3, epoch=1, top1=0.2, top5=0.6, val_loss=2.0, train_loss=1.5) + "\n")
    curves = epoch_curves(paths)
    assert curves["top1"] == [(1, 0.2), (2, 0.3)] and curves["train_loss"][0] == (1, 1.5)


# --- the chart ---------------------------------------------------------------------------------


def style_at(line: Text, index: int) -> str:
    styles = [str(span.style) for span in line.spans if span.start <= index < span.end]
    return styles[-1] if styles else ""


def x_axis(line: str) -> list[str]:
    """What the x axis line says: its ends and its name."""
    return line.replace("└", " ").replace("─", " ").split()


def plot_rows(text: Text) -> tuple[list[Text], int]:
    """The plot's lines (between the title and the x axis) and the index of the first plot column."""
    lines = text.split("\n")
    rows = lines[1:-1]
    return rows, rows[0].plain.index("┤") + 1


def test_the_chart_draws_each_series_in_its_colour() -> None:
    assert len({colour(i) for i in range(4)}) == 4
    up = Series("A up", [(1, 0.0), (3, 1.0)], colour(0))
    down = Series("B down", [(1, 1.0), (3, 0.0)], colour(1))
    text = render_chart("loss", [up, down], width=40, height=11)
    lines = text.split("\n")
    assert len(lines) == 11 and all(line.cell_len <= 40 for line in lines)
    head = lines[0]
    assert head.plain.startswith("loss") and "A up" in head.plain and "B down" in head.plain
    assert style_at(head, head.plain.index("A up") - 2) == colour(0)  # the legend's swatches
    assert style_at(head, head.plain.index("B down") - 2) == colour(1)
    rows, first = plot_rows(text)
    assert len(rows) == 9
    assert rows[0].plain.strip().startswith("1┤") and rows[-1].plain.strip().startswith("0┤")
    last = len(rows[0]) - 1
    assert style_at(rows[0], first) == colour(1) and style_at(rows[0], last) == colour(0)  # B starts high, A ends so
    assert style_at(rows[-1], first) == colour(0) and style_at(rows[-1], last) == colour(1)
    assert x_axis(lines[-1].plain) == ["1", "epoch", "3"]


def test_the_chart_puts_points_on_the_rows_of_their_values() -> None:
    series = Series("A", [(1, 0.0), (2, 10.0), (3, 5.0)], colour(0))
    rows, first = plot_rows(render_chart("top-1", [series], width=30, height=7))  # 5 rows: 10, …, 0
    assert len(rows) == 5
    last = len(rows[0]) - 1
    # x=3, y=5 is the last column, middle row; nothing else is drawn in that column
    assert [row.plain[last] != " " for row in rows] == [False, False, True, False, False]
    assert [row.plain[first] != " " for row in rows] == [False, False, False, False, True]  # x=1, y=0
    assert rows[2].plain.strip().startswith("5┤")  # the middle row's label is its value
    assert "no data yet" in render_chart("empty", [Series("A", [], colour(0))], 30, 8).plain


# --- real runs ---------------------------------------------------------------------------------


@dataclass
class TwoRuns:
    home: Path
    a: str
    b: str

    @property
    def env(self) -> dict[str, str]:
        return {"CLUSTERDECK_HOME": str(self.home)}

    def path(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        lines = self.path(run_id).joinpath("metrics.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["kind"] == "epoch"]


@pytest.fixture(scope="module")
def two_runs(sample_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    """Two finished local runs that differ in lr and epochs (and name); shared by the tests below."""
    tmp = tmp_path_factory.mktemp("compare")
    home = tmp / "home"
    ids = []
    for name, lr, epochs in (("lr-small", 0.05, 2), ("lr-big", 0.1, 3)):
        spec = tmp / f"{name}.toml"
        spec.write_text(f'name = "{name}"\n' + train_section(sample_shards, lr=lr, epochs=epochs))
        result = run_cli("submit", str(spec), "--json", "--wait", env={"CLUSTERDECK_HOME": str(home)}, timeout=240)
        assert result.code == 0, result.err
        ids.append(str(json.loads(result.out)["run_id"]))
    return TwoRuns(home, *ids)


def section(out: str, first: str) -> list[list[str]]:
    """The whitespace-split lines of the table whose header starts with ``first``, up to the next blank line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_diff_prints_spec_differences_and_epochs_side_by_side(two_runs: TwoRuns) -> None:
    a, b = two_runs.a, two_runs.b
    result = run_cli("diff", a, "lr-big", env=two_runs.env)  # by id and by name
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["A", a, "lr-small", "COMPLETED"]
    assert lines[1].split() == ["B", b, "lr-big", "COMPLETED"]
    assert section(result.out, "KEY") == [
        ["name", "lr-small", "lr-big"],
        ["train.epochs", "2", "3"],
        ["train.lr", "0.05", "0.1"],
    ]
    expected = []
    per_run = [{r["epoch"]: r for r in two_runs.epochs(run)} for run in (a, b)]
    assert sorted(per_run[0]) == [1, 2] and sorted(per_run[1]) == [1, 2, 3]
    for epoch in (1, 2, 3):
        row = [str(epoch)]
        for records in per_run:
            r = records.get(epoch)
            row += [f"{r['train_loss']:.4f}", f"{r['top1']:.1%}", f"{r['top5']:.1%}"] if r else ["-", "-", "-"]
        expected.append(row)
    assert section(result.out, "EPOCH") == expected
    bests = []
    for col, records in zip("AB", per_run, strict=True):
        top = max(records.values(), key=lambda r: (r["top1"], -r["epoch"]))
        bests.append([col, f"{top['top1']:.1%}", "at", "epoch", str(top["epoch"])])
    assert section(result.out, "best top-1") == bests

    shown = json.loads(run_cli("diff", a, b, "--json", env=two_runs.env).out)
    assert [(r["column"], r["run_id"], r["name"]) for r in shown["runs"]] == [("A", a, "lr-small"), ("B", b, "lr-big")]
    assert shown["differences"]["train.lr"] == {a: 0.05, b: 0.1}
    assert shown["differences"]["train.epochs"] == {a: 2, b: 3}
    assert "train.model" not in shown["differences"]
    assert shown["curves"][b]["top1"] == [[r["epoch"], r["top1"]] for r in two_runs.epochs(b)]
    assert shown["curves"][a]["train_loss"] == [[r["epoch"], r["train_loss"]] for r in two_runs.epochs(a)]


def test_diff_refuses_one_run_unknown_runs_and_runs_without_a_spec(two_runs: TwoRuns, tmp_path: Path) -> None:
    for args, problem in (
        ((two_runs.a,), "compare needs two or more different runs"),
        ((two_runs.a, two_runs.a), "compare needs two or more different runs"),
        ((two_runs.a, "nosuchrun"), "no run 'nosuchrun'"),
    ):
        result = run_cli("diff", *args, env=two_runs.env)
        assert result.code == 2, result
        assert f"clusterdeck: error: {problem}" in result.err and "Traceback" not in result.err
        assert result.out == ""
    root = tmp_path / "runs"  # a copy, so the shared runs stay whole
    shutil.copytree(two_runs.path(two_runs.a), root / two_runs.a)
    broken = "20990101-000000-broken"
    shutil.copytree(two_runs.path(two_runs.b), root / broken)
    (root / broken / "spec.json").unlink()
    result = run_cli("--runs-root", str(root), "diff", two_runs.a, broken)
    assert result.code == 2 and "Traceback" not in result.err
    assert f"clusterdeck: error: {root / broken / 'spec.json'}: missing" in result.err  # a damaged run, named
    assert f"run {broken} is damaged" in result.err


async def test_the_compare_screen_shows_differences_and_curves_at_80x24(two_runs: TwoRuns) -> None:
    a, b = two_runs.a, two_runs.b
    app = make_app(two_runs.home / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CompareScreen([str(two_runs.path(a)), str(two_runs.path(b))]))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        table = screen.query_one("#differences", DataTable)
        await until(pilot, lambda: any(str(k.value) == "train.lr" for k in table.rows))
        assert [str(c) for c in table.get_row("train.lr")] == ["train.lr", "0.05", "0.1"]
        assert [str(c) for c in table.get_row("train.epochs")] == ["train.epochs", "2", "3"]
        assert len(table.columns) == 3
        runs = str(screen.query_one("#compare-runs", Static).content)
        assert f"A lr-small  {a}  COMPLETED" in runs and f"B lr-big  {b}  COMPLETED" in runs
        loss = screen.query_one("#loss-chart", LineChart)
        assert [s.points for s in loss.series] == [
            [(float(r["epoch"]), r["train_loss"]) for r in two_runs.epochs(run)] for run in (a, b)
        ]
        assert loss.series[0].colour != loss.series[1].colour
        top1 = screen.query_one("#top1-chart", LineChart)
        assert [len(s.points) for s in top1.series] == [2, 3]
        assert loss.region.height > 0 and "epoch" in loss.render().plain  # drawn, in a scrollable body
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)

        app.push_screen(CompareScreen([str(two_runs.path(a))]))
        await pilot.pause()
        runs_static = app.screen.query_one("#compare-runs", Static)
        await until(pilot, lambda: "two or more" in str(runs_static.content))
        assert str(runs_static.content).startswith("cannot compare:")


def test_a_nan_point_is_not_drawn() -> None:
    """A NaN or infinite value (a diverged loss) is left out: the chart is the one of the finite points alone,
    its scale from them, its line joining the neighbours of the gap."""
    from clusterdeck.app.render.chart import Series, render_chart

    nan, inf = float("nan"), float("inf")
    with_gaps = [(1.0, 2.0), (2.0, nan), (3.0, 1.0), (4.0, inf), (nan, 5.0), (5.0, 1.5)]
    finite = [(1.0, 2.0), (3.0, 1.0), (5.0, 1.5)]
    text = render_chart("loss", [Series("A", with_gaps, "red")], 40, 8)
    assert text.plain == render_chart("loss", [Series("A", finite, "red")], 40, 8).plain
    assert "nan" not in text.plain and "inf" not in text.plain
    rows = text.plain.splitlines()
    assert rows[1].split("┤")[0].strip() == "2" and rows[-2].split("┤")[0].strip() == "1"  # y from 1 to 2, not 0 or 5
    assert x_axis(rows[-1]) == ["1", "epoch", "5"]  # x from 1 to 5
    nothing_finite = render_chart("loss", [Series("A", [(1.0, nan), (2.0, inf)], "red")], 40, 8)
    assert nothing_finite.plain.endswith("no data yet")
