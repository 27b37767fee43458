"""A small ILSVRC2012-shaped dataset whose classes a small CNN can learn (no download needed).

Layout, as the real dataset and devkit::

    DIR/train/<wnid>/<wnid>_<k>.JPEG        varied sizes, shorter side 200–500 px
    DIR/val/ILSVRC2012_val_00000001.JPEG    flat, classes interleaved
    DIR/ILSVRC2012_validation_ground_truth.txt   ILSVRC2012_ID (1-based) per val file, in name order
    DIR/synsets.txt                          one "wnid words" line per ILSVRC2012_ID; NOT sorted by wnid
    DIR/meta.mat                             the same synsets as the devkit's meta.mat struct array

A class is a shape drawn in a colour family over a random textured background, at a random
place, size and rotation: learnable, but not from a single pixel or the mean colour alone.
"""

from __future__ import annotations

import colorsys
import io
import math
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("disc", "square", "triangle", "ring", "cross", "hstripes", "vstripes", "diamond")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
SYNSETS = "synsets.txt"
META_MAT = "meta.mat"


@dataclass(frozen=True)
class SampleData:
    root: Path
    wnids: list[str]  # in ILSVRC2012_ID order (index 0 is ID 1)

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def val(self) -> Path:
        return self.root / "val"

    @property
    def ground_truth(self) -> Path:
        return self.root / GROUND_TRUTH

    @property
    def synsets(self) -> Path:
        return self.root / SYNSETS

    @property
    def meta_mat(self) -> Path:
        return self.root / META_MAT

    def shard_inputs(self) -> dict[str, dict[str, str]]:
        """The ``[shard.train]`` and ``[shard.val]`` tables that read this sample set."""
        return {
            "train": {"input": str(self.train), "format": "imagefolder"},
            "val": {
                "input": str(self.val),
                "format": "ilsvrc-val",
                "ground_truth": str(self.ground_truth),
                "synsets": str(self.synsets),
            },
        }


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_200_000_000, 0o644
    tar.addfile(info, io.BytesIO(data))


def make_train_tar(data: SampleData, path: Path) -> Path:
    """``ILSVRC2012_img_train.tar``'s shape from the train tree: a plain tar of ``<wnid>.tar``, one per class."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as outer:
        for wnid in sorted(p.name for p in data.train.iterdir()):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for image in sorted((data.train / wnid).iterdir(), key=lambda p: p.name[::-1]):  # not sorted
                    _add_member(tar, image.name, image.read_bytes())
            _add_member(outer, f"{wnid}.tar", inner.getvalue())
    return path


def make_val_tar(data: SampleData, path: Path) -> Path:
    """``ILSVRC2012_img_val.tar``'s shape: a flat tar of the val images (in reverse order: order must not matter)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for image in sorted(data.val.iterdir(), reverse=True):
            _add_member(tar, image.name, image.read_bytes())
    return path


def make_devkit(data: SampleData, path: Path) -> Path:
    """``ILSVRC2012_devkit_t12.tar.gz``'s shape: ``data/meta.mat`` and the val ground truth in ``data/``."""
    with tarfile.open(path, "w:gz") as tar:
        _add_member(tar, "ILSVRC2012_devkit_t12/COPYING", b"synthetic devkit\n")
        _add_member(tar, "ILSVRC2012_devkit_t12/data/meta.mat", data.meta_mat.read_bytes())
        _add_member(tar, f"ILSVRC2012_devkit_t12/data/{GROUND_TRUTH}", data.ground_truth.read_bytes())
    return path


@dataclass(frozen=True)
class NpzData:
    """Downsampled-ImageNet batches: ``train/train_data_batch_<k>.npz``, ``val/val_data.npz``, ``map_clsloc.txt``."""

    root: Path
    wnids: list[str]  # label k is wnids[k - 1]
    side: int

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def val(self) -> Path:
        return self.root / "val" / "val_data.npz"

    @property
    def synsets(self) -> Path:
        return self.root / "map_clsloc.txt"


def make_npz_batches(
    root: Path,
    classes: int = 6,
    train_per_class: int = 10,
    val_per_class: int = 4,
    side: int = 16,
    batches: int = 2,
    seed: int = 0,
    compressed: bool = False,
) -> NpzData:
    """Rows of 3·S·S uint8 (all R, then all G, then all B) and 1-based labels, classes mixed, as the real files."""
    rng = np.random.default_rng(seed)
    wnids = _make_wnids(rng, classes)
    save = np.savez_compressed if compressed else np.savez

    def images(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(1, classes + 1), per_class)
        rng.shuffle(labels)
        rows = [_pixels(rng, int(k) - 1, classes, side).transpose(2, 0, 1).reshape(-1) for k in labels]
        return np.stack(rows), labels

    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(parents=True, exist_ok=True)
    data, labels = images(train_per_class)
    for k, (part, part_labels) in enumerate(
        zip(np.array_split(data, batches), np.array_split(labels, batches), strict=True), start=1
    ):
        save(root / "train" / f"train_data_batch_{k}.npz", data=part, labels=part_labels.tolist(), mean=data.mean(0))
    data, labels = images(val_per_class)
    save(root / "val" / "val_data.npz", data=data, labels=labels.tolist())
    (root / "map_clsloc.txt").write_text("".join(f"{w} {k} {_words(k)}\n" for k, w in enumerate(wnids, start=1)))
    return NpzData(root, wnids, side)


def _pixels(rng: np.random.Generator, cls: int, classes: int, side: int) -> np.ndarray:
    """An S×S×3 image of class ``cls``, drawn as the JPEG sample images are, at the batches' size."""
    image = _background(rng, side, side)
    size = max(2, int(side * rng.uniform(0.4, 0.7)))
    c = side // 2
    _draw_shape(ImageDraw.Draw(image), SHAPES[cls % len(SHAPES)], c, c, size, _class_colour(cls, classes, rng), rng)
    return np.asarray(image)


def make_sample_data(
    root: Path,
    classes: int = 10,
    train_per_class: int = 40,
    val_per_class: int = 10,
    seed: int = 0,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> SampleData:
    """The sample set under ``root``; ``progress`` hears (images written, images to write)."""
    rng = np.random.default_rng(seed)
    wnids = _make_wnids(rng, classes)
    sorted_wnids = sorted(wnids)
    total, done = classes * (train_per_class + val_per_class), 0
    for wnid in sorted_wnids:
        cls = sorted_wnids.index(wnid)
        folder = root / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(train_per_class):
            (folder / f"{wnid}_{k}.JPEG").write_bytes(_image(rng, cls, classes))
            done += 1
            progress(done, total)
    val_wnids = [w for w in sorted_wnids for _ in range(val_per_class)]
    rng.shuffle(val_wnids)
    (root / "val").mkdir(parents=True, exist_ok=True)
    ids = []
    for n, wnid in enumerate(val_wnids, start=1):
        (root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG").write_bytes(_image(rng, sorted_wnids.index(wnid), classes))
        ids.append(wnids.index(wnid) + 1)
        progress(done + n, total)
    (root / GROUND_TRUTH).write_text("".join(f"{i}\n" for i in ids))
    (root / SYNSETS).write_text("".join(f"{w} {_words(sorted_wnids.index(w))}\n" for w in wnids))
    _write_meta_mat(root / META_MAT, wnids, sorted_wnids)
    return SampleData(root, wnids)


def _make_wnids(rng: np.random.Generator, classes: int) -> list[str]:
    """Distinct wnids in an order that is not sorted, as the devkit's ILSVRC2012_ID order is not."""
    numbers = rng.choice(np.arange(1_000_000, 15_000_000), size=classes, replace=False)
    wnids = [f"n{int(n):08d}" for n in numbers]
    if classes > 1 and wnids == sorted(wnids):
        wnids[0], wnids[1] = wnids[1], wnids[0]
    return wnids


def _words(cls: int) -> str:
    return f"{SHAPES[cls % len(SHAPES)]} {cls // len(SHAPES)}"


def _class_colour(cls: int, classes: int, rng: np.random.Generator) -> tuple[int, int, int]:
    families = max(1, math.ceil(classes / len(SHAPES)))
    hue = ((cls // len(SHAPES)) / families + rng.uniform(-0.04, 0.04)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _image(rng: np.random.Generator, cls: int, classes: int) -> bytes:
    short = int(rng.integers(200, 501))
    long = int(short * rng.uniform(1.0, 1.5))
    w, h = (long, short) if rng.random() < 0.7 else (short, long)
    background = _background(rng, w, h)
    draw = ImageDraw.Draw(background)
    size = int(min(w, h) * rng.uniform(0.3, 0.6))
    cx, cy = int(rng.integers(size // 2, w - size // 2)), int(rng.integers(size // 2, h - size // 2))
    _draw_shape(draw, SHAPES[cls % len(SHAPES)], cx, cy, size, _class_colour(cls, classes, rng), rng)
    out = io.BytesIO()
    background.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2))).save(
        out, "JPEG", quality=int(rng.integers(75, 96))
    )
    return out.getvalue()


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A low-frequency random colour field with grain: no class information, not flat."""
    coarse = rng.integers(40, 216, size=(4, 4, 3), dtype=np.uint8)
    field = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    grain = rng.integers(-18, 19, size=(h, w, 1), dtype=np.int16)
    pixels = np.clip(np.asarray(field, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: int,
    cy: int,
    size: int,
    colour: tuple[int, int, int],
    rng: np.random.Generator,
) -> None:
    r = size // 2
    box = (cx - r, cy - r, cx + r, cy + r)
    angle = rng.uniform(0, 2 * math.pi)

    def rotated(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(4, size // 7))
    elif shape == "square":
        draw.polygon(rotated([(-r, -r), (r, -r), (r, r), (-r, r)]), fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.6, cy), (cx, cy + r), (cx - r * 0.6, cy)], fill=colour)
    elif shape == "triangle":
        draw.polygon(rotated([(0, -r), (r * 0.87, r * 0.5), (-r * 0.87, r * 0.5)]), fill=colour)
    elif shape == "cross":
        t = max(3, size // 6)
        draw.polygon(rotated([(-r, -t), (r, -t), (r, t), (-r, t)]), fill=colour)
        draw.polygon(rotated([(-t, -r), (t, -r), (t, r), (-t, r)]), fill=colour)
    else:  # stripes: the orientation is the class, so no rotation
        t = max(3, size // 10)
        for k in range(-r, r, 2 * t):
            if shape == "hstripes":
                draw.rectangle((cx - r, cy + k, cx + r, cy + k + t), fill=colour)
            else:
                draw.rectangle((cx + k, cy - r, cx + k + t, cy + r), fill=colour)


def _write_meta_mat(path: Path, wnids: list[str], sorted_wnids: list[str]) -> None:
    """The devkit's ``synsets`` struct array (leaf synsets only: num_children = 0)."""
    from scipy.io import savemat

    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    synsets = np.array(
        [(i, w, _words(sorted_wnids.index(w)), "synthetic class", 0) for i, w in enumerate(wnids, start=1)],
        dtype=dtype,
    )
    savemat(path, {"synsets": synsets.reshape(-1, 1)})
