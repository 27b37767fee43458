"""ImageFolder trees as tars, plain or compressed, as ``imagenet21k_resized.tar.gz`` ships one (no download).

``make_imagefolder_tar`` packs a ``<class>/<file>`` tree (``make_sample_data``'s ``train``) under an optional
prefix, its members in an order that is not sorted, so a reader must order them itself. ``make_noise_tree``
writes images of random pixels (PNG, stored: incompressible), for inputs larger than a memory budget.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

ZSTD_LEVEL = 3


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_200_000_000, 0o644
    tar.addfile(info, io.BytesIO(data))


def _folder(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, 1_200_000_000, 0o755
    tar.addfile(info)


def _write_members(tar: tarfile.TarFile, tree: Path, prefix: str) -> None:
    """Every file under ``tree`` with its folders, classes in reverse order and files by reversed name."""
    lead = f"{prefix.strip('/')}/" if prefix else ""
    if lead:
        _folder(tar, lead.rstrip("/"))
    for folder in sorted((p for p in tree.rglob("*") if p.is_dir()), reverse=True):
        _folder(tar, lead + folder.relative_to(tree).as_posix())
        for image in sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name[::-1]):
            _member(tar, lead + image.relative_to(tree).as_posix(), image.read_bytes())


def make_imagefolder_tar(tree: Path, path: Path, prefix: str = "", level: int = 1) -> Path:
    """A tar of the ``<class>/<file>`` tree ``tree`` at ``path``, compressed as its name says (``.tar``,
    ``.tar.gz``, ``.tar.zst``, ``.tar.xz``, ``.tar.bz2``); its members under ``prefix/`` when given."""
    name = path.name.lower()
    if name.endswith((".tar.zst", ".tzst")):
        import zstandard

        with (
            open(path, "wb") as raw,
            zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(raw) as packed,
            tarfile.open(fileobj=packed, mode="w|", format=tarfile.GNU_FORMAT) as tar,
        ):
            _write_members(tar, tree, prefix)
        return path
    mode = {".gz": "w:gz", ".tgz": "w:gz", ".xz": "w:xz", ".bz2": "w:bz2"}.get(path.suffix.lower(), "w")
    options = {"compresslevel": level} if mode in ("w:gz", "w:bz2") else {}
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT, **options) as tar:  # type: ignore[call-overload]
        _write_members(tar, tree, prefix)
    return path


def make_noise_tree(root: Path, classes: int, per_class: int, side: int, seed: int = 0) -> Path:
    """``root/<class>/<class>_<k>.png``, each ``side``×``side`` random pixels stored uncompressed: about
    3·side² bytes an image, which no compressor can shrink."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        wnid = f"n{c:08d}"
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / wnid / f"{wnid}_{k}.png", compress_level=0)
    return root
