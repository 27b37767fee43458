"""A step kind added from outside: a plugin module named in CLUSTERDECK_PLUGINS registers it, and it runs as the
built-in ones do, through ``clusterdeck submit``, the local executor's worker process and ``clusterdeck show``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.runspec import spec_model
from clusterdeck.jobs.spec_form import form_sections
from clusterdeck.jobs.steps import registry
from clusterdeck.jobs.steps.base import StepBase
from clusterdeck.jobs.steps.train_spec import TrainSpec
from tests.conftest import run_cli

PLUGIN = '''
"""A throwaway step kind: writes the numbers 1..count to a file, reporting each."""

from pathlib import Path

from pydantic import Field

from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import Resources, RunSpec, Section
from clusterdeck.jobs.steps.base import PartContext, Progress, StepBase
from clusterdeck.jobs.steps.registry import register


class TallySpec(Section):
    out: Path
    """The file written."""
    count: int = Field(3, ge=1)
    """Numbers to write."""
    resources: Resources = Resources(time_min=5)
    """sbatch resources of the tally step."""


class TallyStep(StepBase):
    name = "tally"
    section = TallySpec
    doc = "Write the numbers 1..count to a file."
    form_open = ("",)

    def outputs(self, spec: RunSpec, paths: RunPaths) -> dict[str, str]:
        return {"file": str(self.config(spec).out)}

    def progress_text(self, progress: Progress) -> str:
        return f"{int(progress['written'])}/{int(progress['count'])} numbers" if "count" in progress else ""

    def run(self, ctx: PartContext) -> None:
        cfg = self.config(ctx.spec)
        with cfg.out.open("w") as out:
            for k in range(1, cfg.count + 1):
                out.write(f"{k}\\n")
                ctx.report({"written": k, "count": cfg.count})


register(TallyStep())
'''


@pytest.fixture
def tally_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The plugin module on PYTHONPATH and named in CLUSTERDECK_PLUGINS, for this process and those it starts;
    its step kind is unregistered afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "tally_step.py").write_text(PLUGIN)
    env = {
        "CLUSTERDECK_PLUGINS": "tally_step",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield env
    finally:
        registry.unregister("tally")


def test_a_plugin_step_runs_through_submit_and_show(tally_plugin: dict[str, str], tmp_path: Path, home: Path) -> None:
    assert [s.name for s in registry.steps()] == ["shard", "export", "train", "script", "evaluate", "tally"]
    assert "tally" in spec_model().model_fields
    assert any(s.key == "tally" and s.optional and s.starts_open for s in form_sections())  # the form asks too

    out = tmp_path / "numbers.txt"
    spec = tmp_path / "tally.toml"
    spec.write_text(f'name = "tally run"\n\n[tally]\nout = "{out}"\n')
    result = run_cli("submit", str(spec), "--set", "tally.count=4", "--wait")
    assert result.code == 0, result.err
    assert "tally: COMPLETED [main 4/4 numbers]" in result.out  # the step's own progress text
    assert out.read_text() == "1\n2\n3\n4\n"
    run_id = result.out.split()[2]

    shown = run_cli("show", run_id)
    assert shown.code == 0, shown.err
    assert "step     tally: COMPLETED" in shown.out
    assert "count=4  written=4" in shown.out
    assert f"output   tally.file: {out}" in shown.out
    view = json.loads(run_cli("show", run_id, "--json").out)
    assert view["state"] == "COMPLETED"
    assert view["steps"][0]["parts"][0]["progress"] == {"written": 4.0, "count": 4.0}

    refused = run_cli("submit", str(spec), env={"CLUSTERDECK_PLUGINS": ""})  # where the plugin is not loaded
    assert refused.code != 0 and "tally: unknown key" in refused.err


def test_register_places_a_step_in_run_order_and_refuses_a_taken_name() -> None:
    class Probe(StepBase):
        name = "probe"
        section = TrainSpec
        doc = "A step that is only registered."

    registry.register(Probe(), before="train")
    try:
        in_order = ["shard", "export", "probe", "train", "script", "evaluate"]
        assert [s.name for s in registry.steps()] == in_order
        assert list(spec_model().model_fields)[2:8] == in_order
        assert registry.step("probe").parts(spec_model().model_validate({"name": "p", "probe": {}})) == ["main"]
        for taken in ("train", "telemetry"):
            with pytest.raises(ValueError, match="exists already"):
                registry.register(type("Again", (Probe,), {"name": taken})())
    finally:
        registry.unregister("probe")
    assert "probe" not in spec_model().model_fields
    with pytest.raises(UserError, match="CLUSTERDECK_PLUGINS"):
        registry.step("probe")
