"""Learning-rate schedules, stepped once per optimizer step."""

from __future__ import annotations

import math

import torch

from clusterdeck.jobs.steps.train_spec import TrainSpec


def build_scheduler(
    cfg: TrainSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    decay_every = cfg.step_size * steps_per_epoch

    def factor(step: int) -> float:
        if cfg.schedule == "step":
            f = cfg.gamma ** (step // decay_every)
        else:
            f = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if step < warmup:
            f *= 0.01 + 0.99 * step / warmup
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(cfg: TrainSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    )
