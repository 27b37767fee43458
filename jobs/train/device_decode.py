"""Decoding on the training device: the workers ship JPEG bytes and crop plans, the trainer decodes them in batches.

On CUDA this is nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")``, with the crop,
resize and flip done on the GPU, for nodes with few CPU cores per GPU. The same code runs on
the CPU (where the tests run it). Four things guard the GPU path:

- **A host barrier before every decode call.** nvJPEG's hardware engine writes its outputs
  when the call is made, not when work already queued on the stream has run, and the caching
  allocator hands the decoder blocks that queued kernels (the optimizer's, after
  ``zero_grad(set_to_none=True)``) still read. A device-side wait (a side stream that waits on
  the caller's, then ``record_stream``) does not gate that write; only the host waiting for the
  caller's stream does (pytorch/vision PR 9606, meta-pytorch/torchcodec PR 1634).
- **Out of memory stays out of memory.** torchvision wraps a CUDA OOM in a plain
  ``RuntimeError``; it is raised again as ``torch.OutOfMemoryError``, so the job prints its
  one-line advice instead of blaming a sample.
- **Chunks of at most ``PIXEL_BUDGET`` pixels.** Each call's outputs and nvJPEG's own buffers
  (outside torch's allocator) grow with the pixels decoded, and each full-size image is dropped
  once cropped, so a batch of 12 MP photographs never holds all its full-size images at once.
- **A structural check of each stream** (``jobs.train.jpeg_check``): a truncated or mangled
  JPEG, which nvJPEG may decode silently, is decoded on the CPU instead, which names it as the
  CPU path does (or, where libjpeg accepts it, gives the CPU path's pixels).

A batch nvJPEG refuses (an unusual JPEG) is decoded image by image, and an image the device
cannot decode is decoded on the CPU; one that nothing decodes is an error naming the sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from clusterdeck.jobs.train.crops import Plan, decode_whole, image_batch, resize_crop, undecodable
from clusterdeck.jobs.train.jpeg_check import BrokenJpeg, check_jpeg

NVJPEG_MODES = ("RGB", "L")
"""The JPEG colour modes (PIL's names) sent to the device; CMYK ones are decoded in the workers."""
PIXEL_BUDGET = 64 * 2**20
"""Pixels decoded per call: about 200 MB of RGB output plus nvJPEG's planes. A pixel budget rather than an image
count, because image sizes vary 100-fold: a 256-image batch of ImageNet-sized JPEGs (0.1–0.2 MP) still goes in one
call, as nvJPEG's batched decoder is fastest, while 12 MP photographs go five at a time. An image over the budget
is decoded alone."""


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
    batch: Encoded,
    device: torch.device,
    size: int,
    extra: Callable[[torch.Tensor], torch.Tensor] | None,
    pixel_budget: int = PIXEL_BUDGET,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 3, size, size) images on ``device`` and the labels (still on the CPU)."""
    images = image_batch(len(batch.labels), size, device)
    if len(batch.ready_at):
        images[batch.ready_at.to(device)] = batch.ready.to(device, non_blocking=True)
    if len(batch.at):
        blobs = list(torch.tensor_split(batch.data, batch.ends[:-1]))
        whole = iter_decoded(blobs, batch.keys, device, pixel_budget=pixel_budget)
        for plan, seed, at in zip(batch.plans.tolist(), batch.seeds.tolist(), batch.at.tolist(), strict=True):
            # next(whole) is bound to no name: the full-size image is freed as soon as it is cropped
            crop = resize_crop(next(whole), Plan(plan[0], plan[1], plan[2], plan[3], bool(plan[4])), size)
            images[at] = crop if extra is None else seeded(extra, crop, seed)
    return images, batch.labels


def decode_jpegs(
    blobs: Sequence[torch.Tensor],
    keys: Sequence[str],
    device: torch.device | str,
    *,
    sync: bool = True,
    pixel_budget: int = PIXEL_BUDGET,
) -> list[torch.Tensor]:
    """Each JPEG (a 1-D uint8 CPU tensor) as uint8 RGB (3, H, W) on ``device``, with every guard of this module;
    ``sync=False`` leaves out the host barrier, to show what the unguarded decoder does."""
    return list(iter_decoded(blobs, keys, torch.device(device), sync=sync, pixel_budget=pixel_budget))


def iter_decoded(
    blobs: Sequence[torch.Tensor],
    keys: Sequence[str],
    device: torch.device,
    *,
    sync: bool = True,
    pixel_budget: int = PIXEL_BUDGET,
) -> Iterator[torch.Tensor]:
    """The JPEGs decoded in order, a chunk of at most ``pixel_budget`` pixels per call; an image handed out is
    no longer referenced here, so the caller decides how long each full-size image lives."""
    pixels = [_pixels(blob) for blob in blobs]
    for start, stop in _chunks(pixels, pixel_budget):
        whole = [k for k in range(start, stop) if pixels[k] is not None]
        decoded = deque(_decode([blobs[k] for k in whole], [keys[k] for k in whole], device, sync))
        for k in range(start, stop):
            yield decoded.popleft() if pixels[k] is not None else _on_cpu(blobs[k], keys[k], device)


def _pixels(blob: torch.Tensor) -> int | None:
    """The image's pixel count from its frame header; None where the stream is not whole (decoded on the CPU)."""
    try:
        frame = check_jpeg(memoryview(blob.numpy()))
    except BrokenJpeg:
        return None
    return frame.width * frame.height


def _chunks(pixels: list[int | None], budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive (start, stop) ranges of at most ``budget`` pixels each, or of one image."""
    start, total = 0, 0
    for k, count in enumerate(pixels):
        if k > start and total + (count or 0) > budget:
            yield start, k
            start, total = k, 0
        total += count or 0
    if start < len(pixels):
        yield start, len(pixels)


def _decode(blobs: list[torch.Tensor], keys: list[str], device: torch.device, sync: bool) -> list[torch.Tensor]:
    if not blobs:
        return []
    try:
        return _call_decoder(blobs, device, sync)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        return [_decode_one(blob, key, device, sync) for blob, key in zip(blobs, keys, strict=True)]


def _decode_one(blob: torch.Tensor, key: str, device: torch.device, sync: bool) -> torch.Tensor:
    try:
        return _call_decoder(blob, device, sync)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        return _on_cpu(blob, key, device)


def _on_cpu(blob: torch.Tensor, key: str, device: torch.device) -> torch.Tensor:
    """What the CPU path gives for this JPEG: its pixels, or its error naming the sample."""
    try:
        pixels = decode_whole(blob.numpy().tobytes())
    except Exception as exc:
        raise undecodable(key, exc) from exc
    return pixels.to(device)


def _call_decoder(data: Any, device: torch.device, sync: bool) -> Any:
    """``decode_jpeg`` on ``device``, after the host barrier; an out-of-memory error as ``torch.OutOfMemoryError``."""
    if sync:
        drain_callers_stream(device)
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():  # "Error while decoding JPEG images: CUDA out of memory…"
            raise torch.OutOfMemoryError(str(exc)) from exc
        raise


def drain_callers_stream(device: torch.device) -> None:
    """Wait on the host until the work queued on this device's current stream has run; nothing off CUDA."""
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


def on_device(
    batches: Iterator[Encoded], device: torch.device, size: int, extra: Callable[[torch.Tensor], torch.Tensor] | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches decoded on ``device``, each as the trainer asks for it (so inside its data wait)."""
    for batch in batches:
        yield decode_batch(batch, device, size, extra)
