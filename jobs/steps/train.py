"""The train step: stage the shards to node-local disk, then train a torchvision classifier with DDP, checkpointing
and requeueing itself at the time limit."""

from __future__ import annotations

from typing import Any

from clusterdeck.jobs.extras import TRAIN
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps.base import PartContext, StepBase
from clusterdeck.jobs.steps.train_spec import TrainResources, TrainSpec


class TrainStep(StepBase):
    name = "train"
    section = TrainSpec
    doc = "Train a torchvision classifier on a shard set."
    form_open = ("",)
    checkpoints = True
    needs = TRAIN

    def check_spec(self, spec: RunSpec) -> None:
        if self.config(spec).train_shards is None and spec.section("shard") is None:
            raise ValueError("train.train_shards: required when the spec has no [shard] section")

    def outputs(self, spec: RunSpec, paths: RunPaths) -> dict[str, str]:
        return {"last": str(paths.checkpoints / "last.pt"), "best": str(paths.checkpoints / "best.pt")}

    def preflight(self, spec: RunSpec, will_run: bool) -> None:
        """Shards made by an earlier run are checked now (index, files, batch size), not after a queue wait."""
        from clusterdeck.jobs.train.order import rank_shards, share_nodes, steps_per_epoch
        from clusterdeck.jobs.train.shardset import train_inputs

        train_spec = self.config(spec)
        if will_run:
            check_model_found(train_spec.model, "train.model")
        if train_spec.train_shards is None:  # this run's [shard] output, written later
            return
        _, train, _ = train_inputs(spec)  # the job's own check of both splits, run before the queue wait
        res = train_spec.resources
        local = spec.cluster.executor == "local"
        nodes = 1 if local else res.nodes
        world = nodes * (1 if local else res.tasks)
        steps_per_epoch(sum(s.samples for s in train), world, train_spec.batch_size, train_spec.grad_accum)
        for rank in range(0, world, world // nodes):  # a shard for every task, on every node
            rank_shards(
                train, seed=train_spec.seed, epoch=0, world=world, rank=rank, nodes=share_nodes(train_spec, nodes)
            )

    def max_requeues(self, spec: RunSpec) -> int:
        return int(self.config(spec).max_requeues)

    def sbatch_extras(self, spec: RunSpec) -> dict[str, Any]:
        return gpu_extras(self.config(spec).resources)

    def srun_args(self, spec: RunSpec) -> list[str]:
        return ["--kill-on-bad-exit=1"]  # one failed rank ends them all, no NCCL hang

    def run(self, ctx: PartContext) -> None:
        from clusterdeck.jobs.signals import signal_flags

        with signal_flags() as signals:  # before torch loads: a USR2 while starting is kept for the loop
            from clusterdeck.jobs.train.step import run_train

            run_train(ctx.spec, ctx.paths, ctx.attempt, ctx.report, signals, ctx.sampler, ctx.failed)


def check_model_found(model: str, field: str) -> None:
    """A 'module:callable' model's module must be found from here, as the job will look for it (not imported)."""
    from clusterdeck.jobs.errors import UserError
    from clusterdeck.jobs.model_ref import importable_problem, is_model_ref

    problem = importable_problem(model) if is_model_ref(model) else None
    if problem:
        raise UserError(f"{field}: {problem}")


def gpu_extras(res: TrainResources) -> dict[str, Any]:
    """GPUs per node (when any) and the warning signal's delay, of a step whose ranks may use GPUs."""
    params: dict[str, Any] = {"gpus_per_node": res.gpus_per_node} if res.gpus_per_node else {}
    params["signal_delay_s"] = res.signal_delay_s
    return params
