"""Decoding only the part of a JPEG that a crop keeps, through nvImageCodec's CPU decoder (libjpeg-turbo).

A region decode stops at the crop's last row and runs the inverse DCT, upsampling and colour
conversion only on the crop's columns; the entropy-coded data above the crop is still read, as a
JPEG without restart markers allows nothing else. The pixels are those of a whole decode cut to
the box (the same libjpeg-turbo settings as ``torchvision.io``; ``tests/test_region_decode.py``
checks that they are equal), so the crop and the resize that follow do not change. As the decode
stops early, it never meets what is wrong further down a broken stream: only streams that pass
the device path's structural check (``jobs.train.jpeg_check``, microseconds) are decoded by region.

Per sample the loader takes the cheaper of this and the whole image at a DCT scale (PIL's
``draft``), as the cost model below estimates them from the frame header, the compressed size and
the box: no timing is involved, so a resumed epoch decodes each sample the same way. Its constants
were fitted by ``python bench/decode_cost.py`` on the 2-core CI machine.

nvImageCodec is loaded in the process that decodes (a loader worker), not at import: the CLI and
the app never load it. It loads only its libjpeg-turbo extension (``NVIMGCODEC_EXTENSIONS_PATH``
pointed at a directory holding a link to it, for the import alone): the GPU codecs' extensions are
not loaded, so nothing is printed about GPU libraries that a CPU node lacks, and with
``PYNVIMGCODEC_VERBOSITY=0`` a stream it refuses is reported by the fallback decoder, which names
the sample. Where nvImageCodec is not installed, the loader decodes as it did before it, and says so
once.

The device decoder (``decode = "device"``, ``jobs.train.device_decode``) still decodes whole
JPEGs with nvJPEG through ``torchvision.io``: a region decode there would have to keep
nvImageCodec's CUDA stream under that module's host barrier, which no test here can check.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from clusterdeck.jobs.train import crops
from clusterdeck.jobs.train.crops import JPEG_START, Plan, read_header, resize_crop
from clusterdeck.jobs.train.jpeg_check import BrokenJpeg, check_jpeg

REGION_MODES = ("RGB", "L")
"""JPEG colour modes (PIL's names) decoded by region; CMYK ones keep the other decoders' conversion."""

# The cost model, in nanoseconds (bench/decode_cost.py): entropy decoding per compressed byte read, the rest of a
# decode per output pixel, PIL's fixed cost per image, and the uint8 antialiased resize per input pixel.
REGION_NS_PER_BYTE = 6.6
REGION_NS_PER_PIXEL = 1.3
REDUCED_NS_FIXED = 90_000
REDUCED_NS_PER_BYTE = 7.1
REDUCED_NS_PER_PIXEL = 1.7
RESIZE_NS_PER_PIXEL = 0.4


class Codec(NamedTuple):
    module: Any
    decoder: Any
    params: Any


def decode_cheaper_crop(data: bytes, plan: Plan, size: int, key: str) -> torch.Tensor:
    """The planned crop as uint8 (3, size, size), as ``crops.decode_crop`` gives it, from the cheaper decode."""
    region = region_if_cheaper(data, plan, size, key)
    if region is None:
        return crops.decode_crop(data, plan, size, key)
    return resize_crop(region, Plan(0, 0, plan.height, plan.width, plan.flip), size)


def region_if_cheaper(data: bytes, plan: Plan, size: int, key: str) -> torch.Tensor | None:
    """The box's pixels (``decode_region``) where that is the cheaper decode of a structurally whole RGB or grey
    JPEG; None where ``crops.decode_box`` should decode it."""
    if data[:2] != JPEG_START:
        return None
    header = read_header(data, key)
    if header.mode not in REGION_MODES:
        return None
    if min(plan.height, plan.width) >= 2 * size:  # else crops.decode_box decodes every pixel: the box is less work
        scale = draft_scale(header.width, header.height, plan, size)
        if not region_cheaper(header.width, header.height, len(data), plan, scale):
            return None
    return decode_region(data, plan) if _whole(data) else None


def _whole(data: bytes) -> bool:
    """Whether the stream passes the device path's structural check. A region decode reads no further than the box's
    last row and never reaches what a whole decode refuses below it (a cut, a stray marker), so a broken stream is
    left to the whole decode, which names the sample as before."""
    try:
        check_jpeg(data)
    except BrokenJpeg:
        return False
    return True


def region_cheaper(width: int, height: int, nbytes: int, plan: Plan, scale: int) -> bool:
    """Whether decoding ``plan``'s box of a ``width`` × ``height`` JPEG of ``nbytes`` costs less, resize included,
    than decoding the whole image at 1/``scale`` (libjpeg's DCT scaling, ``scale`` in 1, 2, 4, 8)."""
    crop = plan.height * plan.width
    region = (
        REGION_NS_PER_BYTE * nbytes * (plan.top + plan.height) / height
        + (REGION_NS_PER_PIXEL + RESIZE_NS_PER_PIXEL) * crop
    )
    reduced = (
        REDUCED_NS_FIXED
        + REDUCED_NS_PER_BYTE * nbytes
        + REDUCED_NS_PER_PIXEL * width * height / scale**2
        + RESIZE_NS_PER_PIXEL * crop / scale**2
    )
    return region <= reduced


def draft_scale(width: int, height: int, plan: Plan, size: int) -> int:
    """The DCT scale PIL's ``draft`` picks for the request ``crops`` makes: the largest of 8, 4, 2, 1 that keeps
    the box at least ``size`` pixels a side."""
    wanted = (-(-width * size // plan.width), -(-height * size // plan.height))
    fits = min(width // wanted[0], height // wanted[1])
    return next(s for s in (8, 4, 2, 1) if fits >= s)


def decode_region(data: bytes, plan: Plan) -> torch.Tensor | None:
    """The box of ``plan`` as uint8 RGB (3, h, w) in channels-last memory; None where nvImageCodec is missing or
    refuses the stream (the caller then decodes the whole image, which names what is wrong)."""
    codec = _codec()
    if codec is None:
        return None
    nv = codec.module
    box = nv.Region(start=(plan.top, plan.left), end=(plan.top + plan.height, plan.left + plan.width))
    try:
        image = codec.decoder.decode(nv.CodeStream(data).get_sub_code_stream(region=box), params=codec.params)
    except Exception:
        return None
    if image is None:
        return None
    pixels = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)  # HWC, kept alive by the array: no copy
    return pixels if pixels.shape == (3, plan.height, plan.width) else None


@functools.cache
def installed() -> bool:
    """Whether nvImageCodec is there to import, found without importing it; said once per process where it is not."""
    try:
        found = importlib.util.find_spec("nvidia.nvimgcodec") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        print(
            "loader: nvImageCodec (the nvidia-nvimgcodec-cu13 package) is not installed: JPEGs are decoded whole "
            "(at a DCT scale where the crop allows) instead of only each crop's region",
            flush=True,
        )
    return found


@functools.cache
def _codec() -> Codec | None:
    """nvImageCodec's CPU decoder for this process, one thread (a loader worker is one core); None, said once,
    where it cannot be loaded."""
    try:
        with _jpeg_extension_only():
            from nvidia import nvimgcodec as nv
        cpu_only = [nv.Backend(nv.BackendKind.CPU_ONLY)]
        decoder = nv.Decoder(device_id=nv.NVIMGCODEC_DEVICE_CPU_ONLY, max_num_cpu_threads=1, backends=cpu_only)
        params = nv.DecodeParams(apply_exif_orientation=False, color_spec=nv.ColorSpec.SRGB)  # as torchvision.io
    except Exception as exc:
        print(f"loader: nvImageCodec cannot be loaded ({exc}): JPEGs are decoded whole instead", flush=True)
        return None
    return Codec(nv, decoder, params)


@contextlib.contextmanager
def _jpeg_extension_only() -> Iterator[None]:
    """The environment nvImageCodec reads when it is imported: its libjpeg-turbo extension alone, no messages."""
    spec = importlib.util.find_spec("nvidia.nvimgcodec")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'nvidia.nvimgcodec'")
    extensions = Path(next(iter(spec.submodule_search_locations)), "extensions")
    wanted = sorted(extensions.glob("libjpeg_turbo_ext.so*"))
    if not wanted:
        raise ImportError(f"no libjpeg-turbo extension in {extensions}")
    chosen = tempfile.mkdtemp(prefix="clusterdeck-nvimgcodec-")
    saved = {name: os.environ.get(name) for name in ("NVIMGCODEC_EXTENSIONS_PATH", "PYNVIMGCODEC_VERBOSITY")}
    try:
        for path in wanted:
            os.symlink(path, Path(chosen, path.name))
        os.environ.update(NVIMGCODEC_EXTENSIONS_PATH=chosen, PYNVIMGCODEC_VERBOSITY="0")
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(chosen, ignore_errors=True)
