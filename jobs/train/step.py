"""The train and evaluate steps as payloads: shard sets in, checkpoints and metrics out, clear errors.

Signals: SLURM sends USR2 ``signal_delay_s`` before the time limit (and on preemption where
the cluster is set up so). The handler only sets a flag; the loop checkpoints at its next
control point, on every rank at the same step, and then submitit requeues the job, which
starts again from that checkpoint. SIGTERM (scancel, preemption) asks for a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from clusterdeck.jobs.errors import RequeueJob, UserError
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.signals import Signals, requeue_with, signal_flags
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.stage.job import StageInterrupted, Staging
from clusterdeck.jobs.steps.evaluate_spec import evaluate_val_shards
from clusterdeck.jobs.telemetry.sampler import Sampler
from clusterdeck.jobs.train import checkpoint, determinism
from clusterdeck.jobs.train.distributed import Dist, Failed, process_group
from clusterdeck.jobs.train.evaluate import evaluate, val_batches
from clusterdeck.jobs.train.loaders import val_loader
from clusterdeck.jobs.train.loop import Job, StopRequested, Trainer, TrainingDiverged
from clusterdeck.jobs.train.models import build_model, load_file, load_weights, num_classes_of, state_dict_of
from clusterdeck.jobs.train.precision import Precision
from clusterdeck.jobs.train.shardset import Shard, ShardReadError, checked_split, train_inputs
from clusterdeck.jobs.train.sizing import size_loader
from clusterdeck.jobs.world import job_world

Report = Callable[[dict[str, float]], None]


def run_train(
    spec: RunSpec,
    paths: RunPaths,
    attempt: int,
    report: Report,
    signals: Signals | None = None,
    sampler: Sampler | None = None,
    failed: Failed | None = None,
) -> None:
    """``signals``: flags set by the job's handlers (``jobs.signals``), installed here when not given;
    ``sampler``: the job's telemetry, told which GPU this rank uses and given the loaders' counts;
    ``failed``: records this rank's failure, called before the rank leaves the process group."""
    if signals is None:
        with signal_flags() as flags:
            return run_train(spec, paths, attempt, report, flags, sampler, failed)
    assert spec.train is not None
    cfg = spec.train
    classes, train, val = train_inputs(spec)
    staging = None
    if cfg.stage.mode != "none":
        place = job_world()
        # stage records from the first node's stager only: appends from several NFS clients can overwrite each other
        metrics = MetricsWriter(paths.metrics, rank=place.rank, attempt=attempt, enabled=place.node == 0)
        workers = size_loader(cfg.workers, cfg.decode, cuda=torch.cuda.is_available()).workers
        staging = Staging(cfg, train, val, place, attempt, metrics, workers, interrupted=lambda: bool(signals.stop))
    try:
        if staging is not None:
            try:
                staging.start()
            except StageInterrupted as stop:
                raise RequeueJob(str(stop), requeue_with(signals.previous_usr2, main=place.rank == 0)) from None
            train, val = staging.train, staging.val
        _train(spec, paths, attempt, report, signals, classes, train, val, sampler, failed)
    finally:
        if staging is not None:
            staging.finish()


def _train(
    spec: RunSpec,
    paths: RunPaths,
    attempt: int,
    report: Report,
    signals: Signals,
    classes: list[str],
    train: list[Shard],
    val: list[Shard],
    sampler: Sampler | None,
    failed: Failed | None,
) -> None:
    assert spec.train is not None
    cfg = spec.train
    determinism.apply(cfg.deterministic)  # before the group starts: cuBLAS reads its workspace setting at CUDA's start
    with process_group(failed) as dist:
        _watch_gpu(sampler, dist)
        if dist.main:
            print(
                f"train: {cfg.model}, {len(classes)} classes, {sum(s.samples for s in train)} train samples in "
                f"{len(train)} shards, {sum(s.samples for s in val)} val; {dist.world} task(s) on {dist.device}",
                flush=True,
            )
        job = Job(
            cfg=cfg,
            classes=classes,
            train_shards=train,
            val_shards=val,
            checkpoint_dir=paths.checkpoints,
            metrics=MetricsWriter(paths.metrics, rank=dist.rank, attempt=attempt, enabled=dist.main),
            dist=dist,
            report=report if dist.main else lambda progress: None,
            signals=signals,
            spec=spec.model_dump(mode="json"),
            tensorboard_dir=paths.tensorboard,
            pipeline=sampler.pipeline if sampler else None,
        )
        with _errors_explained(dist):
            try:
                Trainer(job).fit()
            except StopRequested as stop:
                raise RequeueJob(str(stop), requeue_with(signals.previous_usr2, main=dist.main)) from None


def _watch_gpu(sampler: Sampler | None, dist: Dist) -> None:
    if sampler is not None and dist.device.type == "cuda":
        sampler.watch_gpu(dist.device.index if dist.device.index is not None else torch.cuda.current_device())


@contextmanager
def _errors_explained(dist: Dist) -> Iterator[None]:
    """Expected failures become one clear line (UserError); anything else keeps its traceback."""
    try:
        yield
    except torch.OutOfMemoryError:
        name = torch.cuda.get_device_name(dist.device) if dist.device.type == "cuda" else str(dist.device)
        raise UserError(
            f"CUDA out of memory on {name} (rank {dist.rank}): lower train.batch_size and raise train.grad_accum "
            "to keep the effective batch, or use amp 'bf16' and channels_last"
        ) from None
    except ShardReadError as exc:
        raise UserError(_last_line(exc)) from None
    except (checkpoint.CheckpointError, TrainingDiverged) as exc:
        raise UserError(str(exc)) from None


def _last_line(exc: Exception) -> str:
    """A loader worker's error arrives wrapped with its traceback; the last line is the message."""
    line = str(exc).strip().splitlines()[-1]
    return line.split("ShardReadError: ", 1)[-1]


def checkpoint_to_evaluate(spec: RunSpec, paths: RunPaths) -> Path:
    assert spec.evaluate is not None
    if spec.evaluate.checkpoint is not None:
        return spec.evaluate.checkpoint
    for name in ("best.pt", "last.pt"):
        if (paths.checkpoints / name).exists():
            return paths.checkpoints / name
    raise UserError(f"evaluate.checkpoint: the train step left no checkpoint in {paths.checkpoints}")


def run_evaluate(
    spec: RunSpec,
    paths: RunPaths,
    attempt: int,
    report: Report,
    sampler: Sampler | None = None,
    failed: Failed | None = None,
) -> dict[str, float]:
    """``failed``: as for ``run_train``, records this rank's failure before it leaves the process group."""
    cfg = spec.evaluate
    assert cfg is not None
    path = checkpoint_to_evaluate(spec, paths)
    stored = load_file(path)  # read once: a checkpoint of ours tells the model, size and classes
    saved: dict[str, Any] = stored if checkpoint.is_checkpoint(stored) else {}
    model_name = cfg.model or saved.get("model_name", "")
    same = not cfg.model or cfg.model == saved.get("model_name")
    model_args = cfg.model_args or (saved.get("model_args") or {} if same else {})
    field = "evaluate.model" if cfg.model else "train.model"  # the checkpoint's model is its train.model
    if not model_name:
        raise UserError(f"evaluate.model: {path} is a plain weights file; say which model it is for")
    image_size = cfg.image_size or saved.get("image_size") or 224
    shard_set, val = checked_split(evaluate_val_shards(spec), "val", "evaluate.val_shards")
    weights = state_dict_of(stored, path)
    if saved.get("classes") not in (None, shard_set.classes):
        raise UserError(f"evaluate.val_shards: {shard_set.root} has other classes than {path} was trained on")
    if num_classes_of(weights) not in (None, len(shard_set.classes)):
        raise UserError(
            f"evaluate.checkpoint: {path} has {num_classes_of(weights)} classes, "
            f"{shard_set.root} has {len(shard_set.classes)}"
        )
    determinism.apply(cfg.deterministic)  # before the group starts, as in _train
    with process_group(failed) as dist:
        _watch_gpu(sampler, dist)
        model = build_model(model_name, len(shard_set.classes), model_args, field)
        load_weights(model, weights, path, "evaluate.checkpoint")
        model.to(dist.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        size = size_loader(cfg.workers, cfg.decode, cuda=dist.device.type == "cuda")
        print(
            f"evaluate: {model_name} from {path} on {sum(s.samples for s in val)} val samples, {image_size} px; "
            f"decode {size.decoder}, {size.workers} worker(s)"
        )
        with _errors_explained(dist):
            loader = val_loader(
                val,
                dist,
                batch_size=cfg.batch_size,
                image_size=image_size,
                workers=size.workers,
                decoder=size.decoder,
                pipeline=sampler.pipeline if sampler else None,
            )
            batches = val_batches(loader, size.decoder, dist.device, image_size)
            result = evaluate(
                model, batches, dist, precision=Precision(cfg.amp, dist.device), channels_last=cfg.channels_last
            )
    MetricsWriter(paths.metrics, attempt=attempt).write("evaluate", checkpoint=str(path), **result)
    print(f"val top-1 {result['top1']:.2%}  top-5 {result['top5']:.2%}  loss {result['val_loss']:.4f}", flush=True)
    report({k: result[k] for k in ("top1", "top5", "val_loss", "val_samples")})
    return result
