"""Evaluation: top-1, top-5 and loss of a model over a rank's val batches, summed over all ranks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from clusterdeck.jobs.train.data import Batch
from clusterdeck.jobs.train.device_decode import on_device
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.model_input import normalize
from clusterdeck.jobs.train.precision import Precision
from clusterdeck.jobs.train.sizing import Decoder


def val_batches(loader: DataLoader[Any] | None, decoder: Decoder, device: torch.device, size: int) -> Iterator[Batch]:
    if loader is None:
        return iter(())
    return on_device(iter(loader), device, size, None) if decoder == "device" else iter(loader)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, batches: Iterable[Batch], dist: Dist, *, precision: Precision, channels_last: bool
) -> dict[str, float]:
    """Top-1, top-5 and loss over every val sample, each counted once across all ranks."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=dist.device)  # loss sum, top-1, top-5, samples
    for images, labels in batches:
        x = normalize(images, dist.device, channels_last)
        y = labels.to(dist.device, non_blocking=True)
        with precision.autocast():
            logits = model(x)
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(y.unsqueeze(1))
        totals += torch.stack(
            [
                F.cross_entropy(logits, y, reduction="sum").double(),
                hits[:, :1].sum().double(),
                hits.any(dim=1).sum().double(),
                torch.full((), float(len(y)), dtype=torch.float64, device=dist.device),  # a fill, not a copy
            ]
        )
    loss_sum, top1, top5, n = dist.sum(totals).tolist()
    per = max(n, 1)
    return {"val_loss": loss_sum / per, "top1": top1 / per, "top5": top5 / per, "val_samples": n}
