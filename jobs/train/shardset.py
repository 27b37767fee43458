"""A shard set as the train and evaluate steps see it: its index, checked against the files on disk.

Pure Python (no torch), so the submitting side can run the same checks before any job starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clusterdeck.jobs.checksum import FAST
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.index import read_index

if TYPE_CHECKING:
    from clusterdeck.jobs.spec import RunSpec


class ShardReadError(Exception):
    """A shard could not be read or one of its samples decoded; the message names the shard or sample."""


@dataclass(frozen=True)
class Shard:
    name: str
    path: Path
    samples: int
    bytes: int
    sha256: str
    staging: Path | None = None
    """Set while a stager is still copying ('ahead' mode): its view directory, where FAILED would appear."""
    xxh3: str | None = None
    """The fast checksum (``jobs.checksum``), when the index has it: what staging verifies copies with."""


@dataclass(frozen=True)
class ShardSet:
    root: Path
    classes: list[str]
    splits: dict[str, list[Shard]]

    def split(self, name: str, field: str) -> list[Shard]:
        shards = self.splits.get(name) or []
        if not shards:
            raise UserError(f"{field}: {self.root} has no {name} split (index.json lists {sorted(self.splits)})")
        return shards


def read_shardset(root: Path, field: str) -> ShardSet:
    """Reads ``index.json``; ``field`` (e.g. ``train.train_shards``) names the spec key in errors."""
    index = read_index(root, field)
    splits = {
        name: [
            Shard(s["name"], root / s["file"], int(s["samples"]), int(s["bytes"]), s["sha256"], xxh3=s.get(FAST))
            for s in entry["shards"]
        ]
        for name, entry in index["splits"].items()
    }
    return ShardSet(root, list(index["classes"]), splits)


def check_files(shards: list[Shard], field: str) -> None:
    """Every shard is there with the size the index gives: a missing or truncated shard is named before training."""
    for shard in shards:
        try:
            size = shard.path.stat().st_size
        except FileNotFoundError:
            raise UserError(f"{field}: shard {shard.path} is missing") from None
        if size != shard.bytes:
            raise UserError(
                f"{field}: shard {shard.path} is {size} bytes, the index says {shard.bytes}: it is corrupt or "
                "was replaced; shard the data again (resuming the shard step rewrites only damaged shards)"
            )


def checked_split(root: Path, split: str, field: str) -> tuple[ShardSet, list[Shard]]:
    """The shard set at ``root`` and its ``split``, every file there with its indexed size."""
    shard_set = read_shardset(root, field)
    shards = shard_set.split(split, field)
    check_files(shards, field)
    return shard_set, shards


def train_inputs(spec: RunSpec) -> tuple[list[str], list[Shard], list[Shard]]:
    """(classes, train shards, val shards) with every file checked; val is empty when there is none to use."""
    from clusterdeck.jobs.steps.train_spec import train_shards, train_val_shards  # the spec models: not for stage

    assert spec.train is not None
    train_set, train = checked_split(train_shards(spec), "train", "train.train_shards")
    if spec.train.val_shards is None and "val" not in train_set.splits:
        return train_set.classes, train, []
    val_field = "train.val_shards"
    val_set, val = checked_split(train_val_shards(spec), "val", val_field)
    if val_set.classes != train_set.classes:
        raise UserError(f"{val_field}: {val_set.root} has other classes than the train shards {train_set.root}")
    return train_set.classes, train, val
