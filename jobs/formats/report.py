"""What ``clusterdeck inspect`` reports of an input, from its listing (``entries_report``), and the parts every
report shares: classes, skipped entries, image sizes measured on a seeded sample of at most ``SIZE_SAMPLE``
images (PIL reads only each image's header).

The listing is the shard step's own, so inspect sees what sharding would see. Nothing is written.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.sources import Entries

if TYPE_CHECKING:
    import numpy as np

SIZE_SAMPLE = 64  # images whose size is measured
SHOWN_CLASSES = 5
SEED = 0
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def entries_report(
    path: Path, fmt: str, entries: Entries, *, classed: bool, note: str = "", image_sizes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The report of an image input listed as the shard step lists it; ``classed`` False (``note`` says why):
    its images are counted, their classes unknown. ``image_sizes``: measured already (a source read front to
    back cannot read the seeded sample)."""
    if not entries.names and not entries.skipped:
        raise UserError(f"{path}: no images found as {fmt}")
    return {
        **input_base(path, fmt),
        "images": len(entries.names),
        "bytes": _entry_bytes(path, entries),
        "classes": classes_summary(entries.classes, Counter(entries.wnids)) if classed else None,
        "classes_note": None if classed else note,
        "image_sizes": image_sizes if image_sizes is not None else _sample_sizes(entries),
        "skipped": skipped_summary(entries.skipped),
    }


def input_base(path: Path, fmt: str) -> dict[str, Any]:
    return {"path": str(path), "format": fmt, "ok": True, "npz": None}


def _entry_bytes(path: Path, entries: Entries) -> int:
    """The bytes each sample is stored in (a stat, or the tar member's size): nothing read."""
    total = 0
    for name, loc in zip(entries.names, entries.locs, strict=True):
        size = entries.source.raw_size(loc)
        if size is None:
            raise UserError(f"{path}: cannot read the size of {name}")
        total += size
    return total


def classes_summary(classes: Sequence[str], counts: Mapping[str, int]) -> dict[str, Any]:
    """How many classes the input declares, how many have images, and the fewest and most images of one."""
    per_class = [counts.get(c, 0) for c in classes]
    return {
        "count": len(classes),
        "first": list(classes[:SHOWN_CLASSES]),
        "with_images": sum(1 for n in per_class if n),
        "per_class_min": min(per_class, default=0),
        "per_class_max": max(per_class, default=0),
    }


def skipped_summary(skipped: list[dict[str, str]]) -> dict[str, Any]:
    return {"count": len(skipped), "first": skipped[0] if skipped else None}


def pick(count: int, most: int, rng: np.random.Generator) -> list[int]:
    return sorted(rng.choice(count, size=min(most, count), replace=False).tolist()) if count else []


def _sample_sizes(entries: Entries) -> dict[str, Any]:
    sizes, unreadable = [], 0
    for read in _sampled(entries):
        try:
            with Image.open(io.BytesIO(read())) as image:
                sizes.append(image.size)
        except IMAGE_ERRORS:
            unreadable += 1
    return size_stats(sizes, unreadable)


def _sampled(entries: Entries) -> Iterator[Callable[[], bytes]]:
    """A reader of each sampled image; a source read front to back (``spill.StreamedSource``) gives them in one
    pass over the parts that hold them."""
    import numpy as np  # here, not at the top: a shard set's report needs none of it

    locs = [entries.locs[i] for i in pick(len(entries.locs), SIZE_SAMPLE, np.random.default_rng(SEED))]
    source = entries.source
    if hasattr(source, "stream"):
        for _, data in source.stream(set(locs)):
            yield lambda data=data: data
    else:
        for loc in locs:
            yield lambda loc=loc: source.read(loc)


def size_stats(sizes: list[tuple[int, int]], unreadable: int) -> dict[str, Any]:
    def stats(values: list[int]) -> dict[str, int] | None:
        if not values:
            return None
        return {"min": min(values), "median": statistics.median_low(values), "max": max(values)}

    return {
        "measured": len(sizes),
        "unreadable": unreadable,
        "width": stats([w for w, _ in sizes]),
        "height": stats([h for _, h in sizes]),
    }
