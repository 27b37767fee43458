"""The app's command palette (ctrl+p), driven with the pilot, and the theme it keeps in the user's config file."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandInput, CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.cluster import ClusterScreen
from clusterdeck.app.tui.compare import CompareScreen
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.newrun import NewRunScreen, widget_id
from clusterdeck.app.tui.palette import RUN_HITS, PaletteCommand, best_runs
from clusterdeck.app.tui.runs import RunsScreen
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.remote.profiles import load_profiles
from clusterdeck.jobs.userconfig import load_app_settings, save_app_setting
from tests.conftest import noted, run_cli, train_section, until
from tests.test_snapshots import make_run
from tests.test_tui import submit

CONFIG = """\
# my clusters
[defaults]
partition = "gpu"
setup = ["module load cuda"]

[hosts.login1]
host = "login1.example.org"
user = "me"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's config file (not there yet): ``$XDG_CONFIG_HOME/clusterdeck/config.toml`` of this test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "clusterdeck" / "config.toml"


def hits(app: Any) -> list[str]:
    """The palette's hits as shown, best first: each one's name (the first line of its prompt)."""
    found = app.screen.query_one(CommandList)
    return [str(found.get_option_at_index(i).prompt).split("\n")[0] for i in range(found.option_count)]


async def choose(pilot: Pilot[Any], query: str, best: str) -> None:
    """Opens the palette, types ``query`` and, once ``best`` is the best hit (and highlighted), chooses it; the
    caller waits for what it does."""
    await pilot.press("ctrl+p")
    await until(pilot, lambda: CommandPalette.is_open(pilot.app))
    await pilot.press(*("space" if c == " " else c for c in query))
    listed = pilot.app.screen.query_one(CommandList)
    await until(pilot, lambda: hits(pilot.app)[:1] == [best] and listed.highlighted == 0)
    await pilot.press("enter")


async def test_open_a_run_by_name_or_id_a_template_the_cluster_and_compare(
    sample_shards: Path, tmp_path: Path, home: Path, config: Path
) -> None:
    runs = home / "runs"
    first = make_run(runs, "20261122-101500-aaaaaa", "resnet18-lr0.05", 0.05, 2, [0.4, 0.5])
    second = make_run(runs, "20261122-111500-bbbbbb", "resnet18-lr0.1", 0.1, 2, [0.41, 0.58])
    (home / "templates").mkdir(parents=True)
    (home / "templates" / "tiny.toml").write_text('# my tiny run\nname = "tiny"\n' + train_section(sample_shards))
    app = make_app(runs)
    told = noted(app)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 2)

        await pilot.press("ctrl+p")  # before typing: the app's commands, no run (a root may hold thousands)
        await until(pilot, lambda: "Cluster view" in hits(app))
        assert {"New run", "Compare marked runs", "Theme"} <= set(hits(app))
        assert not [h for h in hits(app) if h.startswith(("Open run", "New run from template", "Cancel run"))]
        await pilot.press("escape")

        await choose(pilot, "lr0.1", "Open run resnet18-lr0.1 20261122-111500-bbbbbb")  # by name
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert isinstance(app.screen, RunDetailScreen) and app.screen.paths.root == second.root
        await pilot.press("escape")
        await choose(pilot, "aaaaaa", "Open run resnet18-lr0.05 20261122-101500-aaaaaa")  # by id
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert isinstance(app.screen, RunDetailScreen) and app.screen.paths.root == first.root
        await pilot.press("escape")

        await choose(pilot, "tiny", "New run from template tiny")  # the form, filled as picking it there fills it
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen))
        form = app.screen
        assert isinstance(form, NewRunScreen)
        epochs = form.query_one(f"#{widget_id('train.epochs')}", Input)
        await until(pilot, lambda: epochs.value == "2" and form.origin == "template tiny")
        assert form.query_one(f"#{widget_id('name')}", Input).value == "tiny"
        await pilot.press("escape")

        await choose(pilot, "cluster", "Cluster view")
        await until(pilot, lambda: isinstance(app.screen, ClusterScreen))
        await pilot.press("escape")

        await choose(pilot, "compare", "Compare marked runs")  # none marked: said, nothing opens
        await until(pilot, lambda: "mark two or more runs with space, then press d" in told)
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("space", "down", "space")
        await choose(pilot, "compare", "Compare marked runs")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        assert sorted(compare.run_ids) == ["20261122-101500-aaaaaa", "20261122-111500-bbbbbb"]


async def test_cancel_then_resume_the_open_run_from_the_palette(
    sample_shards: Path, tmp_path: Path, home: Path, config: Path
) -> None:
    run_id = submit(tmp_path, sample_shards, "palette", epochs=40)
    app = make_app(home / "runs")
    told = noted(app)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.screen.query_one(DataTable)
            await until(pilot, lambda: table.row_count == 1)
            # a live run's progress: a bar and its share, from the run's own reports
            bar = re.compile(r"[█▏▎▍▌▋▊▉ ]{6} +\d+%")
            await until(pilot, lambda: bar.fullmatch(str(table.get_row(run_id)[5])) is not None, timeout=120)
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, RunDetailScreen)
            await until(pilot, lambda: screen.view is not None and screen.view.state == "RUNNING")

            await choose(pilot, "cancel", f"Cancel run {run_id}")  # once: asks, as c does
            await until(pilot, lambda: f"press c again to cancel run {run_id}" in told)
            assert screen.view is not None and screen.view.state == "RUNNING"
            await choose(pilot, "cancel", f"Cancel run {run_id}")  # again: cancels
            await until(pilot, lambda: f"run {run_id}: cancel requested" in told)
            await until(pilot, lambda: screen.view is not None and screen.view.state == "CANCELLED", timeout=60)

            await choose(pilot, "resume", f"Resume run {run_id}")
            await until(pilot, lambda: f"run {run_id}: resubmitted" in told, timeout=60)
            await until(pilot, lambda: screen.view is not None and screen.view.state == "RUNNING", timeout=60)
    finally:
        run_cli("cancel", run_id)  # whatever failed above, no run is left training


async def test_the_theme_chosen_is_kept_in_the_config_with_its_other_tables(tmp_path: Path, config: Path) -> None:
    config.parent.mkdir(parents=True)
    config.write_text(CONFIG)
    config.chmod(0o640)
    before = tomllib.loads(CONFIG)
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "textual-dark"  # Textual's default while the config names none
        await choose(pilot, "theme", "Theme")  # Textual's own picker, in a palette of themes
        await until(pilot, lambda: CommandPalette.is_open(app) and not app.screen.query_one(CommandInput).value)
        await pilot.press(*"nord")
        await until(pilot, lambda: hits(app)[:1] == ["nord"])
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "nord")
        await until(pilot, lambda: "nord" in config.read_text())
    assert tomllib.loads(config.read_text()) == {**before, "app": {"theme": "nord"}}
    assert config.read_text().startswith(CONFIG)  # the user's text, comments included, as it was
    assert stat.S_IMODE(config.stat().st_mode) == 0o640  # the file's own mode: it may be the user's alone
    assert load_app_settings().theme == "nord" and set(load_profiles()) == {"login1"}  # [app] is a known table
    assert not [p for p in config.parent.iterdir() if p.name != "config.toml"]  # no temporary file left

    again = make_app(tmp_path / "runs")  # the next start
    async with again.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(again.screen, RunsScreen))
        assert again.theme == "nord"
    assert "nord" in config.read_text()  # starting in it writes nothing


def test_a_config_file_is_created_for_the_theme_with_the_umasks_mode(config: Path) -> None:
    old = os.umask(0o027)
    try:
        assert save_app_setting("theme", "gruvbox") == config
    finally:
        os.umask(old)
    assert tomllib.loads(config.read_text()) == {"app": {"theme": "gruvbox"}}
    assert stat.S_IMODE(config.stat().st_mode) == 0o640  # group-readable under a umask of 027


@pytest.mark.parametrize(
    ("text", "said", "rewritten"),
    [
        ('[app]\ntheme = "no-such-theme"\n', "app.theme: 'no-such-theme' is not a theme of the app; one of: ", True),
        ("[app]\ntheme = 3\n", "app.theme: Input should be a valid string", True),
        ('[app]\ncolour = "red"\n', "app.colour: Extra inputs are not permitted", False),
        ('app = "nord"\n', "app must be a table ([app])", False),
    ],
)
def test_a_bad_app_table_is_refused_naming_the_file_and_key(
    tmp_path: Path, config: Path, home: Path, text: str, said: str, rewritten: bool
) -> None:
    config.parent.mkdir(parents=True)
    config.write_text(text)
    result = run_cli(env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, timeout=60)  # the app: refused before it starts
    assert result.code == 2, (result.out, result.err)
    assert f"clusterdeck: error: {config}: {said}" in result.err and "Traceback" not in result.err
    assert config.read_text() == text
    if rewritten:  # a bad theme is what choosing one replaces
        save_app_setting("theme", "nord")
        assert load_app_settings().theme == "nord"
    else:  # the rest of the table is the user's to mend: named, and the file left as it is
        with pytest.raises(UserError, match=re.escape(f"{config}: {said}")):
            save_app_setting("theme", "nord")
        assert config.read_text() == text


def test_a_config_that_is_not_toml_is_named_and_left_as_it_is(config: Path) -> None:
    config.parent.mkdir(parents=True)
    config.write_text("[app\ntheme = ")
    with pytest.raises(UserError, match=f"{re.escape(str(config))}: invalid TOML"):
        save_app_setting("theme", "nord")
    assert config.read_text() == "[app\ntheme = "


def test_a_search_offers_the_best_runs_in_the_order_given_among_equals() -> None:
    from textual.fuzzy import Matcher

    runs = [PaletteCommand(f"Open run r{i:05d} 2026{i:05d}", "", lambda: None) for i in range(10_000)]
    best = best_runs(Matcher("r00042"), runs)
    assert len(best) == RUN_HITS and best[0][1].name.startswith("Open run r00042 ")
    assert best_runs(Matcher("nomatch"), runs) == []
    same = [PaletteCommand("Open run a 1", "", lambda: None), PaletteCommand("Open run a 2", "", lambda: None)]
    assert [c.name for _, c in best_runs(Matcher("a"), same)] == ["Open run a 1", "Open run a 2"]


async def test_a_cancel_does_not_wait_behind_a_submission_s_warnings(tmp_path: Path) -> None:
    """A submission holds the warnings' lock for as long as its pre-flight takes (a slow sinfo over --host); an
    action that cannot warn (cancel, the checkpoints listing) runs all the same, and one that can (resume) waits."""
    from clusterdeck.app.tui import warned

    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        told = lambda text: any(text in n.message for n in app._notifications)  # noqa: E731
        with warned._CATCHING:  # the form's submission, still checking
            app.start_action("cancel", lambda: "cancel requested")
            await until(pilot, lambda: told("cancel requested"))
            app.start_action("resume", lambda: "resumed", warns=True)
            await until(pilot, lambda: any(w.group == "actions" and w.is_running for w in app.workers))
            assert not told("resumed")  # it waits for the lock ...
        await until(pilot, lambda: told("resumed"))  # ... and runs once the submission is over
