"""``clusterdeck stage`` on its own (the cache a job with ``keep = true`` reuses), and what it shares with the jobs'
staging (``resolve_to``, ``summary``): kept apart from ``jobs.stage.job`` so that the command loads no spec
models, scheduler or trainer modules before its first byte is copied.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterdeck.jobs.envvars import expand_vars
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.stage.cache import set_name, shared_cache
from clusterdeck.jobs.stage.stager import Item, Stager, Tally
from clusterdeck.jobs.train.shardset import read_shardset


def resolve_to(text: str, field: str = "train.stage.to") -> Path:
    """The staging directory on this node, created if needed; unset variables are named."""
    host = socket.gethostname()
    try:
        path = Path(expand_vars(text))
    except ValueError as exc:
        raise UserError(
            f"{field}: {exc} on {host}; give a node-local directory that exists there, e.g. $TMPDIR or "
            "/local/ssd/$USER/cache"
        ) from None
    if not path.is_absolute():
        raise UserError(f"{field}: {text!r} expands to the relative path {path} on {host}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{field}: cannot create {path} on {host}: {exc.strerror}") from None
    return path


def summary(tally: Tally) -> str:
    """The line a finished stager prints; its rate is over the whole run (a plain ``record()`` made after the
    stager's own last one would measure the moment since then, in which nothing was copied: "0 MB/s")."""
    r = tally.record(final=True)
    mb_s = r["bytes_done"] / 1e6 / max(time.monotonic() - tally.started, 1e-9)  # unrounded: 3 kB/s is not 0
    rate = f"{mb_s:.0f}" if mb_s >= 10 else f"{mb_s:.2g}"
    return (
        f"stage: {r['files_done']}/{r['files_total']} shards ready, {r['bytes_done'] / 1e9:.2f} GB in "
        f"{r['seconds']:.1f} s ({rate} MB/s): {r['copied']} copied, {r['reused']} reused, "
        f"{r['repaired']} repaired"
    )


def warm_cache(
    shard_set: Path,
    to: Path,
    *,
    splits: list[str] | None,
    streams: int,
    max_mb_s: float,
    on_progress: Callable[[dict[str, Any]], None],
) -> tuple[Path, Tally]:
    """``clusterdeck stage``: the persistent cache a job with ``keep = true`` and this ``to`` reuses."""
    index = read_shardset(shard_set, "SHARDS")
    wanted = list(dict.fromkeys(splits or sorted(index.splits)))
    shards = [s for split in wanted for s in index.split(split, "--split")]
    cache = shared_cache(resolve_to(str(to.absolute()), "--to")) / set_name(index)
    stager = Stager(
        [Item(s, cache / s.path.name) for s in shards],
        streams=streams,
        max_mb_s=max_mb_s,
        field="--to",
        on_progress=on_progress,
    )
    return cache, stager.run()
