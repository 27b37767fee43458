"""The user's ``[defaults]`` (``jobs.userconfig``): under a spec's values at submit, named in ``show``, the runs
root of a machine without $CLUSTERDECK_HOME, and errors that name the file and the key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clusterdeck.jobs.records import load_record
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import require_slurm, run_cli, shard_spec


def config(tmp_path: Path, text: str) -> dict[str, str]:
    """The environment of a user whose ~/.config/clusterdeck/config.toml holds ``text``."""
    path = tmp_path / "xdg" / "clusterdeck" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def test_defaults_fill_what_the_spec_leaves_empty_and_show_names_them(
    sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    require_slurm()
    env = config(tmp_path, '[defaults]\nexecutor = "slurm"\npartition = "cpu"\nqos = "normal"\n'
                           'setup = ["export FROM_CONFIG=1"]\n')  # fmt: skip
    spec = tmp_path / "spec.toml"
    text = shard_spec(sample_data, tmp_path / "shards").replace('[cluster]\nexecutor = "local"\n', "")
    spec.write_text(text + '[shard.resources]\ncpus_per_task = 1\nmem_gb = 1\ntime_min = 10\nqos = ""\n')
    done = run_cli("submit", str(spec), "--wait", "--json", env=env, timeout=600)
    assert done.code == 0, done.err
    view = json.loads(done.out)
    assert view["executor"] == "slurm" and view["state"] == "COMPLETED"
    filled = load_record(RunPaths(Path(view["path"]))).from_config
    assert filled == {
        "cluster.executor": "slurm",
        "shard.resources.partition": "cpu",
        "shard.resources.qos": "normal",  # an empty value in the spec is no value
        "shard.resources.setup": ["export FROM_CONFIG=1"],
    }
    shown = run_cli("show", view["run_id"], env=env)
    assert "default  shard.resources.partition = 'cpu' (from your config)" in shown.out, shown.out


def test_a_spec_s_own_values_win_and_the_local_executor_takes_no_partition(
    sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    env = config(tmp_path, '[defaults]\npartition = "gpu"\naccount = "proj"\n')
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_spec(sample_data, tmp_path / "shards"))  # executor = "local"
    done = run_cli("submit", str(spec), "--wait", "--json", env=env)
    assert done.code == 0, done.err
    assert load_record(RunPaths(Path(json.loads(done.out)["path"]))).from_config == {}
    assert "from your config" not in run_cli("show", json.loads(done.out)["run_id"], env=env).out


def test_the_runs_root_of_the_config_is_where_runs_go_and_are_listed(sample_data: SampleData, tmp_path: Path) -> None:
    root = tmp_path / "lab runs"
    env = config(tmp_path, f'[defaults]\nruns_root = "{root}"\n')
    env |= {"HOME": str(tmp_path / "home")}
    clean = {k: v for k, v in os.environ.items() if k != "CLUSTERDECK_HOME"}
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_spec(sample_data, tmp_path / "shards"))
    done = run_cli("submit", str(spec), "--wait", "--json", env={**clean, **env})
    assert done.code == 0, done.err
    assert Path(json.loads(done.out)["path"]).parent == root
    listed = json.loads(run_cli("ls", "--json", env={**clean, **env}).out)["runs"]
    assert [r["run_id"] for r in listed] == [json.loads(done.out)["run_id"]]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[defaults]\npartiton = "gpu"\n', "defaults.partiton: Extra inputs are not permitted"),
        ('[defaults]\nexecutor = "pbs"\n', "defaults.executor: Input should be 'local' or 'slurm'"),
        ("[defaults]\nsetup = 3\n", "defaults.setup: Input should be a valid list"),
        ('defaults = "x"\n', "defaults must be a table"),
        ("[defaults\n", "invalid TOML"),
    ],
)
def test_a_bad_config_is_named_with_its_key_and_exit_2(
    sample_data: SampleData, tmp_path: Path, home: Path, text: str, named: str
) -> None:
    env = config(tmp_path, text)
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_spec(sample_data, tmp_path / "shards"))
    done = run_cli("submit", str(spec), env=env)
    assert done.code == 2 and "Traceback" not in done.err, done.err
    assert f"{tmp_path / 'xdg' / 'clusterdeck' / 'config.toml'}: " in done.err and named in done.err, done.err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # nothing was submitted


def test_a_run_under_a_spec_s_own_runs_root_is_found_from_the_default_one(
    sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    custom = tmp_path / "project runs"
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_spec(sample_data, tmp_path / "shards", name="far-away").replace(
        'executor = "local"', f'executor = "local"\nruns_root = "{custom}"'))  # fmt: skip
    done = run_cli("submit", str(spec), "--wait", "--json")
    assert done.code == 0, done.err
    view = json.loads(done.out)
    assert Path(view["path"]).parent == custom
    for address in (view["run_id"], view["run_id"][:17], "far-away"):
        shown = run_cli("show", address, "--json")  # no --runs-root: the default root's index points there
        assert shown.code == 0 and json.loads(shown.out)["path"] == view["path"], shown.err
    logs = run_cli("logs", view["run_id"])
    assert logs.code == 0 and "shard" in logs.out, logs.err
    assert json.loads(run_cli("ls", "--json").out)["runs"] == []  # listed under its own root, not the default one
    missing = run_cli("show", "no-such-run")
    assert missing.code == 2 and f"no run 'no-such-run' under {home / 'runs'}" in missing.err
