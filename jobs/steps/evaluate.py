"""The evaluate step: top-1/top-5 of a checkpoint (this run's, or any) on a val split, as one task."""

from __future__ import annotations

from typing import Any

from clusterdeck.jobs.extras import TRAIN
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps.base import PartContext, StepBase
from clusterdeck.jobs.steps.evaluate_spec import EvaluateSpec
from clusterdeck.jobs.steps.train import check_model_found, gpu_extras


class EvaluateStep(StepBase):
    name = "evaluate"
    section = EvaluateSpec
    doc = "Top-1/top-5 of a checkpoint on a val split."
    form_open = ("",)
    needs = TRAIN

    def check_spec(self, spec: RunSpec) -> None:
        evaluate = self.config(spec)
        train, shard = spec.section("train"), spec.section("shard")
        if evaluate.checkpoint is None and train is None:
            raise ValueError("evaluate.checkpoint: required when the spec has no [train] section")
        if evaluate.val_shards is None and train is None and shard is None:
            raise ValueError("evaluate.val_shards: required when the spec has no [train] or [shard] section")
        if (evaluate.resources.tasks, evaluate.resources.nodes) != (1, 1):
            raise ValueError("evaluate.resources: evaluation runs as one task on one node")

    def preflight(self, spec: RunSpec, will_run: bool) -> None:
        from clusterdeck.jobs.train.shardset import checked_split

        if will_run:
            check_model_found(self.config(spec).model, "evaluate.model")
        val_shards = self.config(spec).val_shards
        if val_shards is not None:
            checked_split(val_shards, "val", "evaluate.val_shards")

    def sbatch_extras(self, spec: RunSpec) -> dict[str, Any]:
        return gpu_extras(self.config(spec).resources)

    def srun_args(self, spec: RunSpec) -> list[str]:
        return ["--kill-on-bad-exit=1"]

    def run(self, ctx: PartContext) -> None:
        from clusterdeck.jobs.train.step import run_evaluate

        run_evaluate(ctx.spec, ctx.paths, ctx.attempt, ctx.report, ctx.sampler, ctx.failed)
