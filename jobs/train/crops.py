"""Each sample's crop, planned from the image header before a pixel is decoded, and the decode that serves it.

A plan is a box in the original image's pixels and a horizontal flip. Train boxes are
torchvision's RandomResizedCrop draws (scale 0.08–1, ratio 3/4–4/3, ten tries, then the
centre crop) from a per-sample generator; val boxes are Resize(S·256/224) + CenterCrop(S)
expressed in the original image. Knowing the box first lets the decoder work at the smallest
scale that still gives the crop S pixels a side: libjpeg's DCT scaling (1/2, 1/4, 1/8)
through PIL's ``draft`` when the box is at least twice the output size, torchvision.io's
full decode otherwise. The crop is resized as uint8 in channels-last layout (torch's
vectorised antialiased kernel); nothing becomes float on the CPU.
"""

from __future__ import annotations

import io
import math
import re
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from clusterdeck.jobs.train.shardset import ShardReadError

JPEG_START = b"\xff\xd8"
PNG_START = b"\x89PNG\r\n\x1a\n"
TRAIN_SCALE = (0.08, 1.0)
TRAIN_RATIO = (3 / 4, 4 / 3)


class Plan(NamedTuple):
    """A crop box in the original image (pixels) and whether the result is mirrored."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def undecodable(key: str, exc: Exception) -> ShardReadError:
    reason = _SOURCE_PREFIX.sub("", str(exc))  # torchvision's "decode_jpeg, <source file>:<line>, <reason>"
    return ShardReadError(f"sample {key}: cannot decode image: {reason}")


_SOURCE_PREFIX = re.compile(r"^\w+, \S+\.cpp:\d+, ")


class Header(NamedTuple):
    width: int
    height: int
    mode: str
    """PIL's mode: RGB or L for ordinary JPEGs; CMYK for the few that nvJPEG may not convert."""


def read_header(data: bytes, key: str) -> Header:
    """Size and colour mode from the image header alone: a JPEG's frame header directly, anything else by PIL."""
    if data[:2] == JPEG_START:
        found = _jpeg_frame(data)
        if found is not None:
            return found
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Header(image.size[0], image.size[1], image.mode)
    except Exception as exc:
        raise undecodable(key, exc) from exc


_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0–SOF15 but DHT, JPG and DAC
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])  # TEM, RST0–7, SOI: markers without a length
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


def _jpeg_frame(data: bytes) -> Header | None:
    """The frame header's size and component count, without PIL; None where PIL should look."""
    i, end = 2, len(data) - 9
    while i < end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF or marker in _STANDALONE:  # fill byte, or no length field
            i += 1 if marker == 0xFF else 2
            continue
        if marker in _FRAMES:
            height, width = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            mode = _JPEG_MODES.get(data[i + 9])
            return Header(width, height, mode) if width and height and mode else None
        i += 2 + ((data[i + 2] << 8) | data[i + 3])
    return None


def train_plan(width: int, height: int, generator: torch.Generator) -> Plan:
    """RandomResizedCrop's box, drawn exactly as ``transforms.RandomResizedCrop.get_params`` draws it, then the flip."""
    area = width * height
    log_ratio = torch.log(torch.tensor(TRAIN_RATIO))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(*TRAIN_SCALE, generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()  # type: ignore[arg-type]
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return Plan(top, left, h, w, _flip(generator))
    ratio = width / height
    if ratio < min(TRAIN_RATIO):
        w, h = width, round(width / min(TRAIN_RATIO))
    elif ratio > max(TRAIN_RATIO):
        w, h = round(height * max(TRAIN_RATIO)), height
    else:
        w, h = width, height
    return Plan((height - h) // 2, (width - w) // 2, h, w, _flip(generator))


def _flip(generator: torch.Generator) -> bool:
    return bool(torch.rand(1, generator=generator).item() < 0.5)  # RandomHorizontalFlip(p=0.5)


def val_plan(width: int, height: int, size: int) -> Plan:
    """The box that Resize(size·256/224) then CenterCrop(size) keeps, in the original image's pixels."""
    resized_short = size * 256 // 224
    short, long = min(width, height), max(width, height)
    resized_long = int(resized_short * long / short)  # as v2.Resize rounds it
    rw, rh = (resized_long, resized_short) if width >= height else (resized_short, resized_long)
    sx, sy = width / rw, height / rh  # original pixels per resized pixel
    h, w = max(1, min(round(size * sy), height)), max(1, min(round(size * sx), width))
    top = min(round(round((rh - size) / 2) * sy), height - h)
    left = min(round(round((rw - size) / 2) * sx), width - w)
    return Plan(top, left, h, w)


def decode_crop(data: bytes, plan: Plan, size: int, key: str) -> torch.Tensor:
    """The planned crop as uint8 (3, size, size); JPEGs decoded at a reduced scale where the box allows it."""
    try:
        return resize_crop(*decode_box(data, plan, size), size)
    except Exception as exc:
        raise undecodable(key, exc) from exc


def decode_box(data: bytes, plan: Plan, size: int) -> tuple[torch.Tensor, Plan]:
    """The pixels the crop is cut from and the box in them: the whole image, at a reduced scale where the box
    allows (JPEGs)."""
    if min(plan.height, plan.width) >= 2 * size and data[:2] == JPEG_START:
        return _decode_reduced(data, plan, size)
    return decode_whole(data), plan


def decode_whole(data: bytes) -> torch.Tensor:
    """uint8 RGB (3, H, W): torchvision.io for JPEG and PNG; PIL for the rest (BMP, TIFF, GIF's first frame, …)
    and for what torchvision gives in another shape (16-bit PNG)."""
    if data[:2] == JPEG_START or data[:8] == PNG_START:
        pixels = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if pixels.dtype == torch.uint8 and pixels.dim() == 3:
            return pixels
    return torch.from_numpy(np.array(pil_rgb(data))).permute(2, 0, 1)  # HWC as a channels-last CHW view


def pil_rgb(data: bytes) -> Image.Image:
    """Any image PIL reads, whole, as RGB (a GIF's first frame)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _decode_reduced(data: bytes, plan: Plan, size: int) -> tuple[torch.Tensor, Plan]:
    """libjpeg DCT scaling: the largest of 1/2, 1/4, 1/8 that keeps the box at least ``size`` a side."""
    with Image.open(io.BytesIO(data)) as image:
        width = image.size[0]
        image.draft("RGB", (math.ceil(width * size / plan.width), math.ceil(image.size[1] * size / plan.height)))
        scale = 1 / round(width / image.size[0])  # libjpeg gives ceil(W / s) × ceil(H / s) for s in 1, 2, 4, 8
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        pixels = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
    top, bottom = _scaled(plan.top, plan.height, scale, pixels.shape[1])
    left, right = _scaled(plan.left, plan.width, scale, pixels.shape[2])
    return pixels, Plan(top, left, bottom - top, right - left, plan.flip)


def _scaled(start: int, length: int, scale: float, limit: int) -> tuple[int, int]:
    """A span of the original image in the reduced one: both ends rounded, at least a pixel, inside it."""
    first = min(round(start * scale), limit - 1)
    return first, max(first + 1, min(round((start + length) * scale), limit))


def image_batch(n: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """An empty uint8 (n, 3, size, size) batch in channels-last memory, as the crops come and the model wants."""
    return torch.empty((n, size, size, 3), dtype=torch.uint8, device=device).permute(0, 3, 1, 2)


def resize_crop(pixels: torch.Tensor, plan: Plan, size: int) -> torch.Tensor:
    """Crop, antialiased bilinear resize to size × size, flip: uint8 in, uint8 out, on the pixels' device."""
    crop = pixels[:, plan.top : plan.top + plan.height, plan.left : plan.left + plan.width].unsqueeze(0)
    # uint8 interpolation is a CPU kernel: elsewhere the crop becomes float in the same copy
    dtype = torch.uint8 if crop.device.type == "cpu" else torch.float32
    crop = crop.to(dtype=dtype, memory_format=torch.channels_last)
    out = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if out.dtype != torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.flip(-1) if plan.flip else out
