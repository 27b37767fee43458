"""What a shard stores for each sample: the original bytes, or a pre-resized re-encoding.

By default an image file's bytes go into the shard untouched (no generation loss, no
decode cost). With ``resize_shorter = N`` an image whose shorter side is longer than N is
decoded (JPEGs at a reduced DCT scale, which is most of the speed) and scaled down so its
shorter side is N, then stored as JPEG at ``jpeg_quality`` (90 unless set); smaller images
keep their bytes. ``jpeg_quality`` alone re-encodes every image at that quality. Arrays
(downsampled-ImageNet rows) are stored as PNG, lossless, unless a JPEG quality is given.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import numpy as np  # not at run time: inspect and the CLI read this module's constants without numpy

DEFAULT_RESIZE_QUALITY = 90
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
EXTENSION = {"jpeg": "jpg", "png": "png", "gif": "gif", "bmp": "bmp", "tiff": "tiff", "webp": "webp"}
IMAGE_FIELDS = tuple(dict.fromkeys(EXTENSION.values()))


class SkipSample(Exception):
    """This input is not an image that can be stored; the message says why."""


def image_kind(head: bytes) -> str | None:
    """The image format from the first bytes, or None: a cheap check that needs no decode."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True)
class Encoder:
    resize_shorter: int | None = None
    jpeg_quality: int | None = None

    def encode(self, raw: bytes | np.ndarray) -> tuple[str, bytes]:
        """(member extension, bytes) to store for one sample; SkipSample if it is not a usable image."""
        if hasattr(raw, "shape"):  # an array (npz, CIFAR, parquet rows), not encoded bytes
            return self._encode_array(raw)
        kind = image_kind(raw[:16])
        if kind is None:
            raise SkipSample("empty file" if not raw else "not an image (unknown file header)")
        if self.resize_shorter is None and self.jpeg_quality is None:
            return EXTENSION[kind], raw
        try:
            with Image.open(io.BytesIO(raw)) as image:
                target = self._target(image.size)
                if target is None and self.jpeg_quality is None:
                    return EXTENSION[kind], raw
                if target is not None and kind == "jpeg":
                    image.draft("RGB", target)  # DCT scaling to at least the target: a fraction of a full decode
                rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise SkipSample(f"cannot decode: {exc}") from None
        return "jpg", self._jpeg(self._resized(rgb, target))

    def _target(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The size with the shorter side at N, or None when the image is no larger than that already."""
        n = self.resize_shorter
        w, h = size
        if n is None or min(w, h) <= n:
            return None
        return (n, max(n, round(h * n / w))) if w <= h else (max(n, round(w * n / h)), n)

    def _resized(self, image: Image.Image, target: tuple[int, int] | None) -> Image.Image:
        if target is None or image.size == target:
            return image
        return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)

    def _jpeg(self, image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=self.jpeg_quality or DEFAULT_RESIZE_QUALITY)
        return out.getvalue()

    def _encode_array(self, pixels: np.ndarray) -> tuple[str, bytes]:
        image = Image.fromarray(pixels, "RGB")
        image = self._resized(image, self._target(image.size))
        if self.jpeg_quality is not None:
            return "jpg", self._jpeg(image)
        out = io.BytesIO()
        image.save(out, "PNG")
        return "png", out.getvalue()
