"""Real gloo process groups for tests: ``world`` processes on 127.0.0.1, each running one function.

Each rank runs ``target(d, result, *args)`` with a ``Dist`` over a real process group and puts what
it wants checked in the dict ``result``, written as JSON to ``rank<k>.json`` in the directory given,
even when ``target`` raises: the test reads the files after every rank has ended. Kept apart from
the test modules, so that spawned children import only this (and torch), not the suite's fixtures.
"""

from __future__ import annotations

import datetime
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from clusterdeck.jobs.train.distributed import Dist

Target = Callable[..., None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(target: Target, world: int, out: Path, *args: Any, timeout_s: float = 120) -> list[dict[str, Any]]:
    """Runs ``target`` on ``world`` gloo ranks (a group timeout of ``timeout_s``); every rank's JSON, by rank."""
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_rank, args=(target, world, free_port(), timeout_s, out, args), nprocs=world, join=True)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(world)]


def _rank(rank: int, target: Target, world: int, port: int, timeout_s: float, out: Path, args: tuple[Any, ...]) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    d = Dist(rank, world, rank, torch.device("cpu"))
    result: dict[str, Any] = {}
    try:
        target(d, result, *args)
    finally:
        (out / f"rank{rank}.json").write_text(json.dumps(result))
        if dist.is_initialized():
            dist.destroy_process_group()
