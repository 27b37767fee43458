"""A shard's image as an image_size × image_size RGB array, decoded with PIL.

JPEGs are decoded at the smallest libjpeg DCT scale (1/2, 1/4, 1/8) that still leaves both
sides at least ``2 × size`` (PIL's ``draft``), which is most of the speed at 64 px; at ``size``
itself the scaled decode's blockiness shows (twice the mean difference from a full decode on
the sample images). Then 'squash'
resizes the whole image to a square, as downsampled ImageNet does (Chrabaszcz et al. 2017,
box filter), and 'crop' takes the centre square first. Scaling down uses the box filter,
scaling up bicubic.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

DRAFT_MARGIN = 2


class Undecodable(ValueError):
    """PIL could not read the image; the caller names the sample."""


def fit_image(data: bytes, size: int, fit: str) -> np.ndarray:
    """``data`` decoded to RGB and fitted to ``size`` × ``size``: uint8, H × W × 3."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (DRAFT_MARGIN * size, DRAFT_MARGIN * size))
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise Undecodable(str(exc) or type(exc).__name__) from None
    return fit_array(rgb, size, fit)


def fit_array(rgb: Image.Image, size: int, fit: str) -> np.ndarray:
    width, height = rgb.size
    box = None
    if fit == "crop" and width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
    if (width, height) != (size, size):
        shrinking = min(width, height) >= size
        rgb = rgb.resize((size, size), Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC, box=box)
    return np.asarray(rgb, dtype=np.uint8)
