"""The new-run form: drawn from the schema, checked as the CLI checks, submitting through the CLI's call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Select, Static

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.detail import RunDetailScreen
from clusterdeck.app.tui.newrun import NewRunScreen, widget_id
from clusterdeck.jobs import atomic
from clusterdeck.jobs.deck.ssh import SshDeck
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.remote.profiles import Profile, Target
from clusterdeck.jobs.remote.ssh import SshConnection
from clusterdeck.jobs.runspec import load_spec, spec_model
from clusterdeck.jobs.spec_form import (
    check_table,
    form_sections,
    get_key,
    leaf_keys,
    parse_value,
    show_value,
    without_nones,
)
from clusterdeck.jobs.submit import preflight
from tests.conftest import noted, require_slurm, run_cli, train_section, until
from tests.sshd import LOGIN_SETUP, Sshd
from tests.test_slurm_preflight import HELD, path_without_scontrol
from tests.test_tui import submit


def test_the_form_has_a_field_for_every_key_of_a_spec(sample_shards: Path) -> None:
    model = spec_model()
    full = model.model_validate(
        {"name": "x", "shard": {"output": "/tmp/o", "train": {"input": "/"}, "val": {"input": "/"}}, "train": {}},
        context={"check_paths": False},
    ).model_dump(mode="json")
    full["evaluate"] = model.model_validate(
        {"name": "y", "evaluate": {"checkpoint": "/", "val_shards": "/"}}, context={"check_paths": False}
    ).model_dump(mode="json")["evaluate"]
    full["export"] = model.model_validate(
        {"name": "z", "export": {"input": "/", "out": "/tmp/o", "samples": 1}}, context={"check_paths": False}
    ).model_dump(mode="json")["export"]
    full["script"] = model.model_validate(
        {"name": "s", "script": {"command": ["python", "train.py"], "workdir": "/"}}, context={"check_paths": False}
    ).model_dump(mode="json")["script"]
    # free-form tables: one field of TOML inline-table text
    fields = {f.key: f for s in form_sections() for f in s.fields}
    tables = {"train.model_args", "evaluate.model_args", "script.env"}
    assert set(fields) == leaf_keys(full) | tables and {fields[k].kind for k in tables} == {"table"}
    assert parse_value(fields["train.model_args"], "{width = 16}") == {"width": 16}
    assert parse_value(fields["script.env"], '{WANDB_MODE = "offline"}') == {"WANDB_MODE": "offline"}
    assert fields["script.command"].kind == "list" and fields["script.workdir"].default == ""
    optional = {s.key for s in form_sections() if s.optional}
    assert optional == {"shard", "shard.train", "shard.val", "export", "train", "script", "evaluate"}
    # a section's defaults come from where it sits: the shard step's resources are not the class's
    assert fields["shard.resources.cpus_per_task"].default == 8 and fields["train.resources.partition"].default == "gpu"
    assert fields["train.optimizer"].choices == ("sgd", "adamw") and fields["train.nesterov"].kind == "bool"
    assert fields["cluster.runs_root"].kind == "path" and fields["shard.resources.setup"].kind == "list"
    for key, text, value in (
        ("train.epochs", "12", 12),
        ("train.lr", "3e-4", 3e-4),
        ("train.epochs", "twelve", "twelve"),  # left as typed, for validation to name
        (
            "shard.resources.setup",
            '["module load cuda", "source venv/bin/activate"]',
            ["module load cuda", "source venv/bin/activate"],
        ),
        ("train.epochs", "  ", None),
    ):
        assert parse_value(fields[key], text) == value
        assert parse_value(fields[key], show_value(value)) == value  # what the form shows reads back the same


def test_problems_name_their_keys(sample_shards: Path) -> None:
    checked = check_table({"name": "x", "train": {"batch_size": "abc", "lr": -1, "train_shards": str(sample_shards)}})
    assert dict(checked.problems) == {
        "train.batch_size": "Input should be a valid integer, unable to parse string as an integer (got 'abc')",
        "train.lr": "Input should be greater than 0 (got -1)",
    }
    # a check across sections is filed under the key it names
    assert check_table({"name": "x", "train": {}}).problems == [
        ("train.train_shards", "required when the spec has no [shard] section")
    ]


async def test_fill_a_template_see_the_problem_submit_and_clone(
    sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    (home / "templates").mkdir(parents=True)
    (home / "templates" / "tiny.toml").write_text(
        '# my tiny run\nname = "from-the-form"\n' + train_section(sample_shards)
    )
    app = make_app(home / "runs")
    told = noted(app)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, NewRunScreen)
        templates = screen.query_one("#templates", OptionList)
        await until(pilot, lambda: templates.option_count > 0)
        assert templates.get_option_at_index(0).prompt == "★ tiny"  # the user's own come first
        templates.focus()
        await pilot.press("enter")
        epochs = screen.query_one(f"#{widget_id('train.epochs')}", Input)
        await until(pilot, lambda: epochs.value == "2")
        assert screen.query_one(f"#{widget_id('train.amp')}", Select).value == "off"

        epochs.value = "two"  # a bad value: the message sits under the field and names the problem
        error = screen.query_one(f"#{widget_id('train.epochs')}-error", Static)
        await until(pilot, lambda: "valid integer" in str(error.content) and error.display)
        assert "train.epochs" in str(screen.query_one("#problems", Static).content)
        # the form is checked as it stands (no check due or on its way): ctrl+s meets the problem, not a pending check
        await until(pilot, lambda: screen.pending is None and screen.checked is not None
                    and screen.checked.version == screen.version)  # fmt: skip
        await pilot.press("ctrl+s")  # refused: the form says so, names where, and submits nothing
        refused = "1 problem(s) to fix first"
        await until(pilot, lambda: refused in told and app.focused is epochs)
        assert not screen.submitting and not [w for w in app.workers if w.name == "submit"]
        assert not (home / "runs").exists() or not any((home / "runs").iterdir())

        epochs.value = "1"
        await until(
            pilot, lambda: not error.display and screen.checked is not None and not screen.checked.checked.problems
        )
        assert screen.checked is not None and "\nepochs = 1\n" in screen.checked.resolved
        executor = screen.query_one(f"#{widget_id('cluster.executor')}", Select)
        executor.value = "slurm"  # the preview shows what sbatch would get, without submitting
        await until(pilot, lambda: "train" in (screen.checked.scripts if screen.checked else {}))
        assert "#SBATCH --job-name=cd-RUN_ID-train" in screen.checked.scripts["train"]  # type: ignore[union-attr]
        executor.value = "local"
        await until(pilot, lambda: "local" in (screen.checked.scripts if screen.checked else {}))

        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), timeout=60)
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        await until(pilot, lambda: detail.view is not None and detail.view.ended, timeout=180)
        assert detail.view is not None and detail.view.state == "COMPLETED"

        # the same template and edit, headless: the recorded specs are the same
        cli_run = submit(tmp_path, sample_shards, "from-the-form", epochs=1)
        runs = home / "runs"
        app_spec = atomic.read_json(detail.paths.spec)
        assert app_spec == atomic.read_json(runs / cli_run / "spec.json")
        run_cli("cancel", cli_run)

        await pilot.press("l")  # clone: the run's recorded spec in the form
        clone = app.screen
        assert isinstance(clone, NewRunScreen)
        await until(pilot, lambda: clone.checked is not None)
        assert clone.checked is not None and clone.checked.checked.spec is not None
        assert clone.checked.checked.spec.model_dump(mode="json") == app_spec
        assert get_key(clone.table(), "train.epochs") == 1


async def test_a_section_problem_shows_on_the_section(home: Path) -> None:
    app = make_app(home / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, NewRunScreen)
        screen.fill({"name": "no splits", "shard": {"output": str(home / "out")}})
        error = screen.query_one("#s-shard-error", Static)
        await until(pilot, lambda: error.display)
        assert "needs [shard.train] or [shard.val]" in str(error.content)
        screen.fill({"name": "only a name"})  # valid as a table; submit's own check refuses it, here too
        await until(pilot, lambda: screen.checked is not None and screen.checked.table == {"name": "only a name"})
        assert screen.checked is not None
        assert screen.checked.checked.problems == [
            ("spec", "nothing to run; add a [shard], [export], [train], [script] or [evaluate] section")
        ]
        await pilot.press("escape")
        assert not isinstance(app.screen, NewRunScreen)


def test_a_template_saved_from_the_form_loads_as_the_same_spec(sample_shards: Path, home: Path) -> None:
    from clusterdeck.jobs.spec_form import table_toml
    from clusterdeck.jobs.templates import list_templates, save_template

    table = {"name": "saved", "train": {"train_shards": str(sample_shards), "epochs": 3, "amp": "off"}}
    path = save_template(table_toml(table), "saved")
    assert [t.name for t in list_templates() if t.source == "yours"] == ["saved"]
    assert load_spec(path) == check_table(without_nones(table)).spec
    before = path.read_text()
    with pytest.raises(UserError, match="exists"):
        save_template("name = 'other'\n", "saved")
    assert path.read_text() == before  # never overwritten
    with pytest.raises(UserError, match="template name"):
        save_template("name = 'x'\n", "../escape")
    assert json.loads(json.dumps(without_nones({"a": None, "b": {"c": None}, "d": 1}))) == {"b": {}, "d": 1}


def test_the_preview_is_what_submit_hands_the_scheduler_and_writes_nothing(
    sample_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusterdeck.jobs.submit import preview_run

    monkeypatch.setenv("PATH", str(tmp_path))  # a laptop: no sbatch, no srun

    table = {"name": "p", "train": {"train_shards": str(sample_shards), "resources": {"setup": ["module load x"]}}}
    spec = check_table({**table, "cluster": {"executor": "slurm"}}).spec
    assert spec is not None
    scripts = preview_run(spec, tmp_path / "runs")
    assert list(scripts) == ["train"]
    for line in ("#SBATCH --gpus-per-node=8", "#SBATCH --partition=gpu", "#SBATCH --signal=USR2@120", "module load x"):
        assert line in scripts["train"]
    local = check_table(table).spec
    assert local is not None
    assert "module load x && exec " in preview_run(local, tmp_path / "runs")["local"]
    assert not (tmp_path / "runs").exists()


async def test_what_the_form_cannot_hold_is_named_and_left_out(home: Path) -> None:
    app = make_app(home / "runs")
    told = noted(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, NewRunScreen)
        screen.fill({"name": "odd", "cluster": {"executor": "SLURM"}, "train": {"learning_rate": 0.5}}, source="t.toml")
        await until(pilot, lambda: screen.checked is not None and screen.checked.table.get("name") == "odd")
        await until(pilot, lambda: any("left out" in m for m in told))
        warning = next(m for m in told if "left out" in m)
        assert "train.learning_rate (not a key of a spec)" in warning and "t.toml" in warning
        assert "cluster.executor = 'SLURM' (not one of local, slurm)" in warning
        assert screen.query_one(f"#{widget_id('cluster.executor')}", Select).value == Select.NULL
        assert get_key(screen.table(), "train.learning_rate") is None


def login_node(sshd: Sshd, tmp_path: Path) -> SshDeck:
    """A real SSH deck to "login1": this machine through the test sshd, clusterdeck run there over SSH."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.host_key_line())
    target = Target(
        name="login1",
        hostname="127.0.0.1",
        port=sshd.port,
        user="root",
        identity_files=[str(sshd.client_key)],
        profile=Profile(runs_root=str(tmp_path / "runs"), setup=LOGIN_SETUP),
        known_hosts=known_hosts,
    )
    conn = SshConnection(target)
    conn.connect()
    return SshDeck(conn)


async def test_a_remote_decks_paths_are_checked_at_submission_not_in_the_form(sshd: Sshd, tmp_path: Path) -> None:
    table = {
        "name": "remote",
        "cluster": {"executor": "slurm"},
        "train": {"train_shards": "/on/login1/shards", "weights": "/on/login1/w.pt"},
    }
    assert check_table(table).problems == [("train.weights", "path does not exist: /on/login1/w.pt")]  # here
    spec = check_table(table, check_paths=False).spec
    assert spec is not None
    with pytest.raises(UserError, match=r"index\.json not found"):  # and submit's own check of the shard set
        preflight(spec)
    deck = login_node(sshd, tmp_path)
    try:
        app = make_app(deck=deck)
        told = noted(app)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("n")
            screen = app.screen
            assert isinstance(screen, NewRunScreen)
            screen.fill(table)
            await until(  # settled: the fill's own edits each start a check; ctrl+s waits for the last
                pilot,
                lambda: (
                    screen.pending is None
                    and screen.checked is not None
                    and screen.checked.version == screen.version
                    and screen.checked.table.get("name") == "remote"
                ),
            )
            assert screen.checked is not None and screen.checked.checked.problems == []  # neither ran on this machine
            assert "#SBATCH" in screen.checked.scripts["train"]  # the preview needs no filesystem: still shown

            await pilot.press("ctrl+s")  # clusterdeck on the login node checks, its problem lands under the field
            error = screen.query_one(f"#{widget_id('train.weights')}-error", Static)
            await until(pilot, lambda: error.display, timeout=60)
            assert str(error.content) == "↳ path does not exist: /on/login1/w.pt"
            refused = "submit failed: login1: new run form: train.weights"
            await until(pilot, lambda: any(m.startswith(refused) for m in told))
            assert not screen.submitting and isinstance(app.screen, NewRunScreen)
    finally:
        deck.close()  # the SSH connection, whatever the test's outcome
    assert not (tmp_path / "runs").exists()  # refused before anything was written there


@pytest.mark.slurm
async def test_what_a_submission_warns_of_is_told_and_the_run_goes_on(
    sample_shards: Path, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No scontrol on this PATH, but a setup line that may bring it to the job's: submit warns and submits (the
    real cluster's pre-flight, tests/test_slurm_preflight.py); the form tells the warning in a notification."""
    require_slurm()
    bin_dir, real = path_without_scontrol(tmp_path)
    monkeypatch.setenv("PATH", str(bin_dir))
    resources = {"partition": "gpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "time_min": 10}
    resources |= {"setup": [f"export PATH={real}:$PATH"], "extra_sbatch": [HELD]}
    table = {
        "name": "warned",
        "cluster": {"executor": "slurm"},
        "train": {"train_shards": str(sample_shards), "batch_size": 4, "workers": 0, "resources": resources},
    }
    app = make_app(home / "runs")
    told = noted(app)
    run_id = ""
    try:
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("n")
            screen = app.screen
            assert isinstance(screen, NewRunScreen)
            screen.fill(table)
            await until(
                pilot,
                lambda: (
                    screen.pending is None
                    and screen.checked is not None
                    and screen.checked.version == screen.version
                    and screen.checked.table.get("name") == "warned"
                    and not screen.checked.checked.problems
                ),
            )
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), timeout=60)
            detail = app.screen
            assert isinstance(detail, RunDetailScreen)
            run_id = detail.paths.run_id
            warning = "train.resources.setup: scontrol is not on PATH here, and submitit needs it on the nodes"
            await until(pilot, lambda: any(m.startswith(warning) for m in told))
            assert f"submitted run {run_id}" in told
            assert len([m for m in told if "scontrol" in m]) == 1  # one notification for the one warning
    finally:
        if run_id:
            run_cli("cancel", run_id)
