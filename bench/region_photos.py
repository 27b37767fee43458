"""What decoding only a crop's region saves on given JPEGs (real photos, say): nvImageCodec's CPU decoder on the
whole image and on three one-ninth regions (top-left, centre, bottom), against torchvision.io's whole decode.

    python bench/region_photos.py PHOTO.jpg [PHOTO.jpg ...]

A region decode stops after the region's last row but entropy-decodes every byte above it, so what it saves
depends on where the region lies and on how the bytes are spread: the figures bound what the loader's region
decode can gain on such images (``jobs/train/region_decode.py``). Times are per decode, best of 3 runs of 30.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.io as tio
from PIL import Image

from clusterdeck.jobs.train import region_decode


def per_call_ms(call: Callable[[], object], n: int = 30) -> float:
    call()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e3


def main() -> None:
    codec = region_decode._codec()
    if codec is None:
        sys.exit("nvImageCodec is not installed: pip install nvidia-nvimgcodec-cu13")
    nv = codec.module
    for path in map(Path, sys.argv[1:]):
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            w, h = image.size
            progressive = bool(image.info.get("progressive") or image.info.get("progression"))
        whole = per_call_ms(lambda d=data: codec.decoder.decode(nv.CodeStream(d), params=codec.params))
        tv = per_call_ms(lambda d=data: tio.decode_jpeg(torch.frombuffer(bytearray(d), dtype=torch.uint8)))
        regions = {"top-left": (0, 0), "centre": (h // 3, w // 3), "bottom": (2 * h // 3, w // 3)}
        times = []
        for name, (top, left) in regions.items():
            box = nv.Region(start=(top, left), end=(top + h // 3, left + w // 3))

            def decode(d: bytes = data, b: object = box) -> object:
                return codec.decoder.decode(nv.CodeStream(d).get_sub_code_stream(region=b), params=codec.params)

            ms = per_call_ms(decode)
            times.append(f"{name} {ms:.2f} ms ({whole / ms:.1f}x)")
        kind = " progressive" if progressive else ""
        print(
            f"{path.name}: {w}x{h}{kind}, {len(data) // 1000} KB; whole {whole:.2f} ms (torchvision {tv:.2f}); "
            f"1/9 regions: {', '.join(times)}"
        )


if __name__ == "__main__":
    main()
