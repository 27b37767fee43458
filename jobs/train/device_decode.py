"""Decoding on the training device: the workers ship JPEG bytes and crop plans, the trainer decodes them in batches.

On CUDA this is nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")``, one call per
batch, with the crop, resize and flip done on the GPU, for nodes with few CPU cores per GPU.
The same code runs on the CPU (where the tests run it). A batch nvJPEG refuses (a CMYK or
otherwise unusual JPEG) is decoded image by image, and an image the device cannot decode is
decoded on the CPU; one that nothing decodes is an error naming the sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from jobs.train.crops import Plan, decode_whole, image_batch, resize_crop, undecodable

NVJPEG_MODES = ("RGB", "L")
"""The JPEG colour modes (PIL's names) sent to the device; CMYK ones are decoded in the workers."""


class Encoded(NamedTuple):
    """A batch as a worker ships it for device decoding."""

    data: torch.Tensor
    """Every JPEG of the batch, end to end (uint8)."""
    ends: torch.Tensor
    """Where each JPEG ends in ``data``."""
    plans: torch.Tensor
    """(n, 5): top, left, height, width, flip of each JPEG's crop, in its original pixels."""
    seeds: torch.Tensor
    """Each JPEG's seed for the extra augmentation (AutoAugment, RandAugment)."""
    at: torch.Tensor
    """Each JPEG's place in the batch."""
    ready: torch.Tensor
    """Samples that are not JPEG (PNG rows), decoded and augmented in the worker: (m, 3, S, S) uint8."""
    ready_at: torch.Tensor
    labels: torch.Tensor
    keys: list[str]


def seeded(transform: Callable[[Any], Any], image: Any, seed: int) -> Any:
    """``transform(image)`` with torch's CPU generator (the one v2's policies draw from) seeded for this sample,
    then restored; CUDA generators are left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return transform(image)


def decode_batch(
    batch: Encoded, device: torch.device, size: int, extra: Callable[[torch.Tensor], torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 3, size, size) images on ``device`` and the labels (still on the CPU)."""
    images = image_batch(len(batch.labels), size, device)
    if len(batch.ready_at):
        images[batch.ready_at.to(device)] = batch.ready.to(device, non_blocking=True)
    if len(batch.at):
        blobs = list(torch.tensor_split(batch.data, batch.ends[:-1]))
        decoded = _decode(blobs, batch.keys, device)
        for pixels, plan, seed, at in zip(
            decoded, batch.plans.tolist(), batch.seeds.tolist(), batch.at.tolist(), strict=True
        ):
            crop = resize_crop(pixels, Plan(plan[0], plan[1], plan[2], plan[3], bool(plan[4])), size)
            images[at] = crop if extra is None else seeded(extra, crop, seed)
    return images, batch.labels


def _decode(blobs: list[torch.Tensor], keys: list[str], device: torch.device) -> list[torch.Tensor]:
    try:
        return decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return [_decode_one(blob, key, device) for blob, key in zip(blobs, keys, strict=True)]


def _decode_one(blob: torch.Tensor, key: str, device: torch.device) -> torch.Tensor:
    try:
        return decode_jpeg(blob, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        pass
    try:
        return decode_whole(blob.numpy().tobytes()).to(device)
    except Exception as exc:
        raise undecodable(key, exc) from exc


def on_device(
    batches: Iterator[Encoded], device: torch.device, size: int, extra: Callable[[torch.Tensor], torch.Tensor] | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches decoded on ``device``, each as the trainer asks for it (so inside its data wait)."""
    for batch in batches:
        yield decode_batch(batch, device, size, extra)
