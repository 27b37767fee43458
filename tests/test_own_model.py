"""A user's model, ``[train] model = "module:callable"``, in the built-in loop: trained, resumed and evaluated from
its checkpoint, and every way the reference can be wrong is one line naming ``train.model``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.train import checkpoint
from tests.conftest import REPO, SMALL_TRAIN, run_cli, train_section

EXAMPLES = REPO / "templates" / "examples"

BROKEN = """
import torch


def wrong_signature(classes):
    return torch.nn.Linear(3, classes)


def not_a_module(num_classes):
    return "a string"


def raises(num_classes):
    raise RuntimeError("no GPU for this net\\nsecond line")


not_callable = 3
"""


def records(paths: RunPaths, kind: str) -> list[dict[str, Any]]:
    lines = paths.metrics.read_text().splitlines() if paths.metrics.exists() else []
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_the_example_cnn_trains_above_twice_chance_then_resumes_and_evaluates(
    learnable_shards: Path, tmp_path: Path, home: Path
) -> None:
    from clusterdeck.jobs.train.step import run_evaluate, run_train

    spec = tmp_path / "spec.toml"
    own = {"model": "cnn:build_cnn", "epochs": 10, "optimizer": "adamw", "lr": 0.01, "model_args": {"width": 16}}
    evaluate = '[evaluate]\nworkers = 0\namp = "off"\n'
    spec.write_text('name = "own"\n' + train_section(learnable_shards, **own) + evaluate)
    result = run_cli("submit", str(spec), "--wait", "--json", env={"PYTHONPATH": str(EXAMPLES)}, timeout=300)
    assert result.code == 0, result.err
    view = json.loads(result.out)
    assert [s["state"] for s in view["steps"]] == ["COMPLETED"] * 2, result.out
    paths = RunPaths(Path(view["path"]))
    saved = checkpoint.load(paths.checkpoints / "last.pt")
    assert (saved["model_name"], saved["model_args"]) == ("cnn:build_cnn", {"width": 16})
    evaluated = records(paths, "evaluate")[0]
    assert evaluated["val_samples"] == 120 and evaluated["top1"] > 2 / 6  # six classes: above twice chance

    # resume: a second attempt rebuilds the same net (width 16) and loads last.pt into it
    copy = RunPaths(tmp_path / "copy")
    shutil.copytree(paths.root, copy.root)
    own_spec = validate({"name": "own", "train": {"train_shards": str(learnable_shards), **SMALL_TRAIN, **own}})
    progress: list[dict[str, float]] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLES))
        run_train(own_spec, copy, 2, progress.append)
        # evaluate with only the checkpoint: the model and its arguments come from it
        section = {"checkpoint": str(paths.checkpoints / "best.pt"), "workers": 0, "amp": "off"}
        plain = validate({"name": "e", "evaluate": {**section, "val_shards": str(learnable_shards)}})
        again = run_evaluate(plain, copy, 2, progress.append)
        assert again["top1"] == pytest.approx(evaluated["top1"])
        with pytest.raises(UserError, match=r"evaluate.checkpoint: .* does not fit"):  # other arguments: other net
            other = {**section, "val_shards": str(learnable_shards), "model": "cnn:build_cnn"}
            other["model_args"] = {"width": 8}
            run_evaluate(validate({"name": "e", "evaluate": other}), copy, 3, progress.append)
    assert any(p.get("resumed_from_step") == saved["global_step"] for p in progress), progress


def test_a_module_that_cannot_be_found_is_refused_at_submit(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "bad"\n' + train_section(sample_shards, model="nosuchpkg.nets:build"))
    result = run_cli("submit", str(spec))
    assert result.code == 2 and "Traceback" not in result.err
    assert "train.model: cannot find module 'nosuchpkg.nets' of 'nosuchpkg.nets:build'" in result.err
    spec.write_text('name = "bad"\n' + train_section(sample_shards, model="nets:"))
    result = run_cli("submit", str(spec))
    assert result.code == 2 and "train.model: 'nets:' is not a module:callable reference" in result.err
    spec.write_text('name = "bad"\n' + train_section(sample_shards, model_args={"width": 8}))
    result = run_cli("submit", str(spec))
    assert result.code == 2 and "model_args is only for a 'module:callable' model" in result.err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("broken:missing", r"^train.model: module 'broken' \(.*broken.py\) has no 'missing'$"),
        ("broken:not_callable", r"^train.model: 'broken:not_callable' is a int, not a callable"),
        ("broken:wrong_signature", r"^train.model: broken:wrong_signature\(num_classes=6\) failed: TypeError: "),
        ("broken:raises", r"^train.model: broken:raises\(num_classes=6\) failed: RuntimeError: no GPU for this net$"),
        ("broken:not_a_module", r"^train.model: broken:not_a_module\(num_classes=6\) returned a str, not a torch"),
    ],
)
def test_a_bad_callable_is_one_line_naming_train_model(
    model: str, message: str, sample_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusterdeck.jobs.train.step import run_train

    (tmp_path / "broken.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    spec = validate({"name": "t", "train": {"train_shards": str(sample_shards), **SMALL_TRAIN, "model": model}})
    with pytest.raises(UserError, match=message) as caught:
        run_train(spec, paths, 1, lambda progress: None)
    assert "\n" not in str(caught.value)


def test_a_job_that_cannot_import_the_model_says_so_in_show(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    """Found at submit, gone by the time the job starts: the job's one line, shown by ``clusterdeck show``."""
    module = tmp_path / "mods" / "gone.py"
    module.parent.mkdir()
    module.write_text("def build(num_classes):\n    raise SystemExit\n")
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "gone"\n' + train_section(sample_shards, model="gone:nothing_here", epochs=1))
    env = {"PYTHONPATH": str(module.parent)}
    result = run_cli("submit", str(spec), "--wait", "--json", env=env, timeout=300)
    assert result.code != 0
    shown = run_cli("show", "gone", env=env).out
    assert "train.model: module 'gone'" in shown and "has no 'nothing_here'" in shown, shown
    assert "Traceback" not in shown
