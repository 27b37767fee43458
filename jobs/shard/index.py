"""The shard set's index file: name, format tag and reading, shared by the writer and all readers (light imports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterdeck.jobs import atomic
from clusterdeck.jobs.errors import UserError

INDEX = "index.json"
INDEX_FORMAT = "clusterdeck-shards/1"


def read_index(root: Path, field: str = "") -> dict[str, Any]:
    """``root``'s index.json; UserError, starting with the spec ``field`` when given, if ``root`` is no shard set."""
    path, at = root / INDEX, f"{field}: " if field else ""
    try:
        index = atomic.read_json(path)
    except FileNotFoundError:
        raise UserError(f"{at}{path} not found; is {root} a shard set written by the shard step?") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{at}cannot read {path}: {exc}") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise UserError(f"{at}{path} is not a clusterdeck shard index ({INDEX_FORMAT})")
    return index
