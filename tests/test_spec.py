from __future__ import annotations

from pathlib import Path

import pytest

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.runspec import load_spec
from clusterdeck.jobs.specfile import apply_overrides, parse_override
from tests.conftest import run_cli, shard_spec


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_overrides_are_parsed_as_toml_and_fall_back_to_strings() -> None:
    assert parse_override("shard.seed=3") == (["shard", "seed"], 3)
    assert parse_override('cluster.executor="slurm"') == (["cluster", "executor"], "slurm")
    assert parse_override("shard.output=/scratch/x y") == (["shard", "output"], "/scratch/x y")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_override("shard.seed")
    with pytest.raises(UserError, match=r"shard\.seed is a value"):
        apply_overrides({"shard": {"seed": 1}}, ["shard.seed.x=2"])


def test_spec_loads_with_overrides_and_expands_paths(tmp_path: Path, sample_data, monkeypatch) -> None:
    monkeypatch.setenv("OUT_ROOT", str(tmp_path / "out"))
    text = shard_spec(sample_data, Path("$OUT_ROOT/shards"))
    spec = load_spec(
        write(tmp_path, text), ["shard.seed=7", "shard.resources.array_tasks=4", 'cluster.runs_root="~/runs"']
    )
    assert spec.shard is not None
    assert spec.shard.seed == 7
    assert spec.shard.resources.array_tasks == 4
    assert spec.shard.output == tmp_path / "out" / "shards"
    assert spec.cluster.runs_root == Path.home() / "runs"
    assert spec.steps == ["shard"]


def test_every_problem_is_reported_with_its_key_path(tmp_path: Path, sample_data) -> None:
    text = (
        shard_spec(sample_data, tmp_path / "o")
        .replace("seed = 0", "sead = 0")
        .replace("workers = 2", 'workers = "many"')
    )
    text = text.replace(f'input = "{sample_data.train}"', 'input = "/no/such/dir"')
    with pytest.raises(UserError) as info:
        load_spec(write(tmp_path, text), ["cluster.executor=pbs"])
    problems = "\n".join(info.value.problems)
    assert "shard.sead: unknown key (did you mean 'shard.seed'?)" in problems
    assert "shard.workers: Input should be a valid integer" in problems
    assert "shard.train.input: path does not exist: /no/such/dir" in problems
    assert "cluster.executor: Input should be 'local' or 'slurm'" in problems
    assert len(info.value.problems) == 4


def test_unset_variable_and_missing_val_labels_are_errors(tmp_path: Path, sample_data) -> None:
    text = shard_spec(sample_data, Path("$CLUSTERDECK_NO_SUCH_VAR/x"))
    text = text.replace(f'synsets = "{sample_data.synsets}"', "")
    with pytest.raises(UserError) as info:
        load_spec(write(tmp_path, text))
    problems = "\n".join(info.value.problems)
    assert "shard.output: environment variable $CLUSTERDECK_NO_SUCH_VAR is not set" in problems
    assert "shard.val: format 'ilsvrc-val' needs synsets" in problems


def test_cli_spec_errors_exit_2_without_traceback(tmp_path: Path, sample_data, home) -> None:
    spec = write(tmp_path, shard_spec(sample_data, tmp_path / "o").replace("seed = 0", "sed = 0"))
    result = run_cli("submit", str(spec), "--set", "shard.workers=0")
    assert result.code == 2
    assert "shard.sed: unknown key (did you mean 'shard.seed'?)" in result.err
    assert "shard.workers: Input should be greater than or equal to 1" in result.err
    assert "Traceback" not in result.err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())

    for args, needle in [
        (("submit", str(tmp_path / "missing.toml")), "spec file not found"),
        (("submit", str(spec), "--set", "shard.seed"), "expected KEY=VALUE"),
        (("show", "nope"), "no run 'nope'"),
        (("frobnicate",), "invalid choice"),
    ]:
        result = run_cli(*args)
        assert result.code == 2, args
        assert needle in result.err
        assert "Traceback" not in result.err

    bad = write(tmp_path, "name = 'x'\n[shard\n")
    result = run_cli("submit", str(bad))
    assert result.code == 2 and "invalid TOML" in result.err
