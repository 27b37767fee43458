"""Any listed input as an export pool: the samples an input format lists (``InputFormat.entries``), read at random
where its source allows (a plain tar, a ``save_to_disk`` directory), or in one front-to-back pass of the input
(a parquet file, a compressed tar: ``jobs.shard.spill.StreamedSource``), decoded and fitted as shard samples are.

The chosen samples are read in the input's own order, so a streamed input is read once; each chunk carries which
of its rows go to the val files, as the shard pool's do (``jobs.export.inputs.Chunk``). Decoding runs in this
process: these inputs are read once, where the shard pool's shards are decoded by several workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.export.images import Undecodable, fit_image
from clusterdeck.jobs.export.inputs import Choice, Chunk, chunk_rows
from clusterdeck.jobs.formats.base import Key
from clusterdeck.jobs.shard.sources import Entries, Listing, labelled
from clusterdeck.jobs.shard.spill import StreamedSource


@dataclass
class EntriesPool:
    root: Path
    listing: Listing
    classes: int
    class_names: list[str]
    kind: str
    inflate_bytes: int = 0

    @property
    def size(self) -> int:
        return len(self.listing)

    def open(self, cache: Path) -> None:
        pass

    def sample_rows(self, count: int, seed: int, size: int, fit: str) -> np.ndarray:
        """``count`` seeded samples, decoded and fitted, to measure."""
        picked = np.random.default_rng([seed, 2]).choice(self.size, min(count, self.size), replace=False)
        rows = [chunk.pixels for chunk in self._read(np.sort(picked), np.zeros(len(picked), bool), size, fit)]
        return np.concatenate(rows)

    def chunks(self, choice: Choice, size: int, fit: str, workers: int, seed: int) -> Iterator[Chunk]:
        chosen = np.concatenate([choice.train, choice.val])
        is_val = np.concatenate([np.zeros(len(choice.train), bool), np.ones(len(choice.val), bool)])
        order = np.argsort(chosen, kind="stable")
        yield from self._read(chosen[order], is_val[order], size, fit)

    def _read(self, indices: np.ndarray, is_val: np.ndarray, size: int, fit: str) -> Iterator[Chunk]:
        """The samples at ``indices`` (sorted) of the listing, in the input's order, a chunk at a time."""
        listing = self.listing
        val_of = dict(zip((listing.locs[i] for i in indices.tolist()), is_val.tolist(), strict=True))
        index_of = {listing.locs[i]: i for i in indices.tolist()}
        pixels: list[np.ndarray] = []
        labels: list[int] = []
        vals: list[bool] = []
        for loc, data in self._samples(list(index_of)):
            i = index_of[loc]
            try:
                pixels.append(fit_image(data, size, fit))
            except Undecodable as exc:
                raise UserError(f"{self.root}: {listing.names[i]}: cannot decode the image ({exc})") from None
            labels.append(int(listing.labels[i]))
            vals.append(val_of[loc])
            if len(pixels) == chunk_rows(size):
                yield Chunk(np.stack(pixels), np.array(labels), np.array(vals))
                pixels, labels, vals = [], [], []
        if pixels:
            yield Chunk(np.stack(pixels), np.array(labels), np.array(vals))

    def _samples(self, locs: list[Any]) -> Iterator[tuple[Any, bytes]]:
        source = self.listing.source
        try:
            if isinstance(source, StreamedSource):
                yield from source.stream(set(locs))
                return
            for loc in locs:
                yield loc, source.read(loc)
        except OSError as exc:
            raise UserError(f"{self.root}: cannot read ({exc.strerror or exc})") from None


def entries_pool(root: Path, entries: Entries, kind: str, num_classes: int | None, key: Key) -> EntriesPool:
    """The export pool of an input's listing; classes are the input's, in its order."""
    classes = entries.classes
    if num_classes is not None and num_classes < len(classes):
        raise UserError(f"{key('num_classes')}: {num_classes}, but {root} has {len(classes)} classes")
    listing = labelled(entries, classes)
    return EntriesPool(root, listing, num_classes or len(classes), list(classes), kind)
