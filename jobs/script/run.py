"""One task of a ``[script]`` step: stage the shards (as the train step does), then run the user's command with
its task's environment (``jobs.taskenv``) and turn how it ended into the run's record.

This process never imports torch: the command brings its own, in the environment ``cluster.python`` and
``[script.resources] setup`` give it. The command's exit decides the step: 0 completes it,
``clusterdeck.REQUEUE`` (75) requeues the job (after a checkpoint, at the time limit), anything else fails the run
with the exit and the last line the command wrote to stderr.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from clusterdeck.jobs.errors import RequeueJob, UserError
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.script.process import run_command
from clusterdeck.jobs.signals import requeue_with, signal_flags
from clusterdeck.jobs.stage.job import StageInterrupted, Staging
from clusterdeck.jobs.steps.base import PartContext
from clusterdeck.jobs.steps.script_spec import ScriptSpec, script_shards
from clusterdeck.jobs.taskenv import REQUEUE, TaskEnv
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from clusterdeck.jobs.train.order import share_nodes
from clusterdeck.jobs.train.shardset import read_shardset
from clusterdeck.jobs.train.sizing import size_loader
from clusterdeck.jobs.world import World, job_world


class ScriptFailed(UserError):
    """The command ended with an exit code other than 0 or REQUEUE; the message says how and what it said last."""

    exit_code = 1


def run_script(ctx: PartContext) -> None:
    cfg: ScriptSpec = ctx.spec.section("script")
    world = job_world()
    shards = script_shards(ctx.spec)
    staging: Staging | None = None
    ended_well = False
    try:
        with signal_flags() as signals:  # a USR2 while staging requeues the job, as in the train step
            previous_usr2 = signals.previous_usr2
            if shards is not None and cfg.stage.mode != "none":
                staging = _staging(ctx, cfg, world, shards, lambda: bool(signals.stop))
                try:
                    staging.start()
                except StageInterrupted as stop:
                    raise RequeueJob(str(stop), requeue_with(previous_usr2, main=world.rank == 0)) from None
                shards = staging.view / staging.names[shards]
            if signals.stop or signals.checkpoint:  # the command has nothing to save yet: requeue now
                why = signals.stop or "SIGTERM"
                raise RequeueJob(f"{why} before the command started", requeue_with(previous_usr2, main=world.rank == 0))
        _run(ctx, cfg, world, shards, staging, previous_usr2)
        ended_well = True
    except RequeueJob:
        ended_well = True  # every task stops: the node's stager waits for its peers before removing the copies
        raise
    finally:
        if staging is not None:
            # after a failure, no wait: this task's exit is what makes srun end its peers (--kill-on-bad-exit)
            staging.finish(wait_for_peers=ended_well)


def _staging(ctx: PartContext, cfg: ScriptSpec, world: World, shards: Path, interrupted: Callable[[], bool]) -> Staging:
    shard_set = read_shardset(shards, "script.shards")
    # stage records from the first node's stager only, as in the train step
    metrics = MetricsWriter(ctx.paths.metrics, rank=world.rank, attempt=ctx.attempt, enabled=world.node == 0)
    workers = size_loader("auto", "auto", cuda=cfg.resources.gpus_per_node > 0).workers
    train, val = shard_set.splits.get("train", []), shard_set.splits.get("val", [])
    return Staging(cfg, train, val, world, ctx.attempt, metrics, workers, interrupted=interrupted, section="script")


def _run(
    ctx: PartContext, cfg: ScriptSpec, world: World, shards: Path | None, staging: Staging | None, previous_usr2: object
) -> None:
    ctx.paths.checkpoints.mkdir(exist_ok=True)
    if cfg.resources.gpus_per_node:
        ctx.sampler.watch_command_gpu(world.local_rank)
    addr, port = _master(world)
    pipeline = _shared_pipeline(ctx)
    stop_file = Path(tempfile.gettempdir()) / f"clusterdeck-stop-{world.job_id}-{world.rank}-{os.getpid()}"
    stop_file.unlink(missing_ok=True)
    task = TaskEnv(
        rank=world.rank,
        world_size=world.world,
        local_rank=world.local_rank,
        local_world_size=world.tasks_per_node,
        node=world.node,
        nodes=world.nodes,
        master_addr=addr,
        master_port=port,
        run_dir=ctx.paths.root,
        shards=shards,
        checkpoint_dir=ctx.paths.checkpoints,
        attempt=ctx.attempt,
        metrics=ctx.paths.metrics,
        staging=staging.view if staging is not None else None,
        stop_file=stop_file,
        shard_nodes=share_nodes(cfg, world.nodes) if staging is not None else 1,
        pipeline=pipeline.name if pipeline is not None else "",
    )
    env = {"PYTHONUNBUFFERED": "1", **os.environ, **cfg.env, **task.variables()}
    if world.rank == 0:
        print(
            f"script: {' '.join(cfg.command)} in {cfg.workdir}, {world.world} task(s); shards {shards or '(none)'}",
            flush=True,
        )
    try:
        ended = run_command(cfg.command, cwd=cfg.workdir, env=env, stop_file=stop_file)
    except OSError as exc:
        raise UserError(
            f"script.command: cannot start {cfg.command[0]!r} in {cfg.workdir} on {socket.gethostname()}: "
            f"{exc.strerror or exc}"
        ) from None
    finally:
        stop_file.unlink(missing_ok=True)
        if pipeline is not None:
            pipeline.unlink()
    if ended.returncode == 0:
        return
    if ended.returncode == REQUEUE:
        if world.restarts >= cfg.max_requeues:  # submitit counts only requeues near the time limit
            raise ScriptFailed(
                f"the command exited with clusterdeck.REQUEUE ({REQUEUE}) after {world.restarts} requeue(s); "
                f"script.max_requeues is {cfg.max_requeues}"
            )
        requeue = requeue_with(previous_usr2, main=world.rank == 0)
        raise RequeueJob(f"the command exited with clusterdeck.REQUEUE ({REQUEUE})", requeue)
    raise ScriptFailed(ended.describe(cfg.command))


def _shared_pipeline(ctx: PartContext) -> Pipeline | None:
    """The task's data-pipeline counters as a named segment the command's loader attaches to (it is exec'd, not
    forked), sampled by this task's telemetry; none when telemetry is off or the node has no shared memory."""
    if ctx.sampler.pipeline is None:
        return None
    try:
        pipeline = Pipeline.shared()
    except OSError as exc:
        print(f"[clusterdeck] no pipeline counters for the command: {exc}", file=sys.stderr, flush=True)
        return None
    ctx.sampler.pipeline = pipeline
    return pipeline


def _master(world: World) -> tuple[str, int]:
    """Where rank 0 listens for its peers: SLURM's first node and a port from the job id (submitit's choice, the
    same on every task), or this machine and a free port for a single task."""
    if world.world > 1:
        import submitit.helpers

        env = submitit.helpers.TorchDistributedEnvironment()
        return env.master_addr, env.master_port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "127.0.0.1", sock.getsockname()[1]
