"""The script step: a user's own training command, run once per task (srun on SLURM) after [shard], with the
shards staged to node-local disk, the task's place in ``RANK``/``WORLD_SIZE``/… and requeue at the time limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps.base import PartContext, StepBase
from clusterdeck.jobs.steps.script_spec import ScriptSpec, script_shards
from clusterdeck.jobs.steps.train import gpu_extras


class ScriptStep(StepBase):
    name = "script"
    section = ScriptSpec
    doc = "Run your own training command once per task, on the (staged) shards, requeued at the time limit."
    form_open = ("",)
    checkpoints = True

    def check_spec(self, spec: RunSpec) -> None:
        cfg = self.config(spec)
        if cfg.stage.mode != "none" and script_shards(spec) is None:
            raise ValueError("script.stage.mode: there are no shards to stage; set script.shards or add [shard]")

    def outputs(self, spec: RunSpec, paths: RunPaths) -> dict[str, str]:
        return {"checkpoints": str(paths.checkpoints)}

    def preflight(self, spec: RunSpec, will_run: bool) -> None:
        """Shards made earlier are a shard set; a script the command names is in the working directory."""
        from clusterdeck.jobs.train.shardset import read_shardset

        cfg = self.config(spec)
        if cfg.shards is not None:
            read_shardset(Path(cfg.shards), "script.shards")
        if will_run:
            _check_program(cfg.command, cfg.workdir)

    def max_requeues(self, spec: RunSpec) -> int:
        return int(self.config(spec).max_requeues)

    def sbatch_extras(self, spec: RunSpec) -> dict[str, Any]:
        return gpu_extras(self.config(spec).resources)

    def srun_args(self, spec: RunSpec) -> list[str]:
        return ["--kill-on-bad-exit=1"]  # one failed task ends them all, no wait in a collective

    def run(self, ctx: PartContext) -> None:
        from clusterdeck.jobs.script.run import run_script

        run_script(ctx)


def _check_program(command: list[str], workdir: Path) -> None:
    """A relative program path (``./train.sh``) or the script of ``python train.py`` must be in ``workdir``: the
    common slip of submitting from the wrong directory is named now, not after the queue wait."""
    program = command[0]
    if "/" in program and not (workdir / program).exists():
        raise UserError(f"script.command: {program} is not in {workdir} (script.workdir)")
    is_python = Path(program).name.startswith("python")
    if is_python and len(command) > 1 and command[1].endswith(".py") and not (workdir / command[1]).is_file():
        raise UserError(f"script.command: {command[1]} is not in {workdir} (script.workdir)")
