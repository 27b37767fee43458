"""The cost model behind the loader's choice between a region decode and a DCT-scaled whole decode, fitted here.

Times, on one core (CPU time, the best of --repeat), on JPEGs of several kinds (photo-like
1/f noise at ImageNet's sizes, quality 90 and 75, a 1600 × 1200 one, and smooth gradients):

- region decodes (``jobs.train.region_decode.decode_region``) of random boxes, fitted as
  ``ns/byte × compressed bytes × the box's bottom row / height + ns/pixel × box pixels``;
- whole decodes at 1/1, 1/2, 1/4, 1/8 (``jobs.train.crops._decode_reduced``, PIL's ``draft``),
  fitted as ``fixed + ns/byte × bytes + ns/pixel × decoded pixels``;
- the uint8 antialiased resize (``crops.resize_crop``) to 224 and 64 px, as ns per input pixel.

It prints the constants (``region_decode`` keeps them) and checks the model where it matters:
over RandomResizedCrop draws at 224 and 64 px, the decode time of the path it picks against the
faster path measured, and against always one path or the other.

    python bench/decode_cost.py [--boxes 12] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from loader import photo  # bench/loader.py
from PIL import Image

from clusterdeck.jobs.train.crops import Plan, _decode_reduced, resize_crop, train_plan
from clusterdeck.jobs.train.region_decode import decode_region, draft_scale, region_cheaper


def smooth(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def cpu_time(f: Callable[[], Any], repeat: int, calls: int = 10) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(calls):
            f()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e9


def fit(rows: list[list[float]], times: list[float]) -> tuple[np.ndarray, float]:
    a, y = np.array(rows), np.array(times)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef, float(np.max(np.abs(a @ coef - y) / y))


def reduced_time(data: bytes, plan: Plan, size: int, repeat: int) -> float:
    return cpu_time(functools.partial(_decode_reduced, data, plan, size), repeat)


def region_path(data: bytes, plan: Plan, size: int) -> torch.Tensor:
    pixels = decode_region(data, plan)
    assert pixels is not None
    return resize_crop(pixels, Plan(0, 0, plan.height, plan.width), size)


def reduced_path(data: bytes, plan: Plan, size: int) -> torch.Tensor:
    return resize_crop(*_decode_reduced(data, plan, size), size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=12, help="random boxes per image")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = {
        "photo 550x400 q90": jpeg(photo(rng, 550, 400), 90),
        "photo 400x530 q75": jpeg(photo(rng, 400, 530), 75),
        "photo 1600x1200 q90": jpeg(photo(rng, 1600, 1200), 90),
        "smooth 550x400 q90": jpeg(smooth(550, 400), 90),
        "smooth 1600x1200 q90": jpeg(smooth(1600, 1200), 90),
    }
    region_rows, region_times, reduced_rows, reduced_times = [], [], [], []
    for data in images.values():
        width, height = Image.open(io.BytesIO(data)).size
        for _ in range(args.boxes):
            h, w = int(rng.integers(height // 8, height + 1)), int(rng.integers(width // 8, width + 1))
            box = Plan(int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
            region_times.append(cpu_time(functools.partial(decode_region, data, box), args.repeat))
            region_rows.append([len(data) * (box.top + h) / height, h * w])
        for scale in (1, 2, 4, 8):
            size = max(1, min(width, height) // scale // 2 + 1)  # makes PIL's draft pick ``scale``
            whole = Plan(0, 0, height, width)
            assert draft_scale(width, height, whole, size) == scale
            reduced_times.append(reduced_time(data, whole, size, args.repeat))
            reduced_rows.append([1, len(data), width * height / scale**2])
    (per_byte, per_pixel), worst = fit(region_rows, region_times)
    print(f"region:  {per_byte:.2f} ns/byte read, {per_pixel:.2f} ns/pixel (worst fit {worst:.0%})")
    (fixed, reduced_byte, reduced_pixel), worst = fit(reduced_rows, reduced_times)
    print(
        f"reduced: {fixed / 1000:.0f} us fixed, {reduced_byte:.2f} ns/byte, {reduced_pixel:.2f} ns/pixel "
        f"(worst fit {worst:.0%})"
    )
    resize = []
    for size in (224, 64):
        for h, w in [(300, 400), (450, 600), (900, 1200)]:
            pixels = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8).permute(2, 0, 1)
            resize.append(
                cpu_time(functools.partial(resize_crop, pixels, Plan(0, 0, h, w), size), args.repeat) / (h * w)
            )
    print(f"resize:  {np.median(resize):.2f} ns/input pixel (median; {min(resize):.2f}-{max(resize):.2f})")
    check(images, args.repeat)


def check(images: dict[str, bytes], repeat: int) -> None:
    """The model's pick against the measured faster path, over RandomResizedCrop draws the reduced path can serve."""
    for size in (224, 64):
        picked = best = region_only = reduced_only = 0.0
        right = total = 0
        for data in images.values():
            width, height = Image.open(io.BytesIO(data)).size
            for seed in range(8):
                plan = train_plan(width, height, torch.Generator().manual_seed(seed))
                if min(plan.height, plan.width) < 2 * size:
                    continue  # the reduced path would decode every pixel: the region is a part of that work
                scale = draft_scale(width, height, plan, size)
                region = cpu_time(functools.partial(region_path, data, plan, size), repeat)
                reduced = cpu_time(functools.partial(reduced_path, data, plan, size), repeat)
                choice = region_cheaper(width, height, len(data), plan, scale)
                picked += region if choice else reduced
                best, region_only, reduced_only = (
                    best + min(region, reduced),
                    region_only + region,
                    reduced_only + reduced,
                )
                right, total = right + (choice == (region <= reduced)), total + 1
        if total:
            print(
                f"{size} px, {total} crops either path serves: the model picks the faster in {right}; decode + resize "
                f"time picked / fastest {picked / best:.3f}, always region / fastest {region_only / best:.3f}, "
                f"always reduced / fastest {reduced_only / best:.3f}"
            )


if __name__ == "__main__":
    main()
