"""Staging inside the train job, and on its own (``clusterdeck stage``).

In the job, local rank 0 of each node stages; the node's other ranks wait for its READY
marker ('before'), or start at once and wait for each shard as they open it ('ahead'). The
wait is on files, not on a torch.distributed barrier: staging 'before' runs before the process
group exists, so a long copy never trips a collective's timeout. 'ahead', a rank waits for a
shard while its peers may sit in a collective: that wait is bounded below the group's timeout
(``jobs.train.timeouts``), so the job fails naming the shard, not with a collective's error.
Shards are copied in the order the node's loader workers will first read them, then the val
shards.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from clusterdeck.jobs import atomic
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.stage.cache import FAILED, READY, job_dir, node_dir, set_name, shared_cache
from clusterdeck.jobs.stage.copy import Cancelled
from clusterdeck.jobs.stage.stager import Item, Stager, Tally
from clusterdeck.jobs.stage.warm import resolve_to, summary
from clusterdeck.jobs.steps.train_spec import Staged
from clusterdeck.jobs.train.order import rank_shards, share_nodes, split_workers, val_shares
from clusterdeck.jobs.train.shardset import Shard, read_shardset
from clusterdeck.jobs.train.timeouts import COLLECTIVE_TIMEOUT_S, STAGED_WAIT_S
from clusterdeck.jobs.world import World

POLL_S = 0.05
PEERS_WAIT_S = 1800.0
"""How long a node's stager waits for the node's other tasks to finish reading before it removes the copies."""


class StageFailed(UserError):
    """Staging on this node failed; the message says why."""


class StageInterrupted(Exception):
    """USR2 (the time limit is near) came while staging before training: the job should requeue."""


def read_order(cfg: Staged, train: list[Shard], val: list[Shard], world: World, workers: int) -> list[Shard]:
    """The shards this node needs, in the order its ranks' ``workers`` loader workers each first open them."""
    nodes = share_nodes(cfg, world.nodes)
    per_node = world.tasks_per_node
    ranks = range(world.node * per_node, (world.node + 1) * per_node)
    queues: list[list[Shard]] = []
    for rank in ranks:
        mine = rank_shards(train, seed=cfg.seed, epoch=0, world=world.world, rank=rank, nodes=nodes)
        n = split_workers(mine, workers)
        queues.extend(mine[w::n] for w in range(n))
    order = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    if cfg.stage.scope == "all":
        first = {s.name for s in order}
        order += [s for s in train if s.name not in first]
        order += val
    else:
        order += [
            s for rank in ranks for share in val_shares(val, world=world.world, rank=rank, workers=1) for s in share
        ]
    return order


class Staging:
    """This node's staged copies of the train and val shards, and the stager that makes them."""

    def __init__(
        self,
        cfg: Staged,
        train: list[Shard],
        val: list[Shard],
        world: World,
        attempt: int,
        metrics: MetricsWriter,
        workers: int,
        interrupted: Callable[[], bool] = lambda: False,
        section: str = "train",
    ) -> None:
        """``section``: the spec section whose ``stage`` this is, as problems name it."""
        stage = cfg.stage
        self.section = section
        if world.world % world.nodes or world.rank // world.tasks_per_node != world.node:
            raise UserError(
                f"{section}.stage: rank {world.rank} of {world.world} runs on node {world.node} of {world.nodes}; "
                "staging needs the same number of tasks on every node, numbered node by node (srun's block layout)"
            )
        self.cfg, self.world, self.metrics, self.interrupted = cfg, world, metrics, interrupted
        to = resolve_to(stage.to, f"{section}.stage.to")
        self.job_dir = job_dir(to, world.job_id)
        self.node_dir = node_dir(to, world.job_id, world.node)
        self.view = self.node_dir / f"view-{attempt}-{world.restarts}"
        self.cache = cache = shared_cache(to) if stage.keep else self.node_dir / "cache"
        self.roots = roots = {s.path.parent for s in train + val}
        names = {root: set_name(read_shardset(root, f"{section}.shards")) for root in roots}
        self.names = names
        waits = self.view if stage.mode == "ahead" else None

        def local(shard: Shard) -> Shard:
            return replace(shard, path=self.view / names[shard.path.parent] / shard.path.name, staging=waits)

        self.train, self.val = [local(s) for s in train], [local(s) for s in val]
        order = read_order(cfg, train, val, world, workers)
        self.items = [Item(s, cache / names[s.path.parent] / s.path.name) for s in order]
        self.thread: threading.Thread | None = None
        self.stager: Stager | None = None
        self.failed = False

    @property
    def stager_here(self) -> bool:
        return self.world.local_rank == 0

    def start(self) -> None:
        """Stages ('before'), starts staging in the background ('ahead'), or waits for this node's stager."""
        if not self.stager_here:
            if self.cfg.stage.mode == "before":
                wait_marker(self.view, READY, self.interrupted)
            return
        try:
            self._start()
        except StageInterrupted:
            raise
        except BaseException as exc:
            self._failed(exc)
            raise

    def _start(self) -> None:
        for old in self.node_dir.glob("view-*"):  # an earlier start of this job on this node
            shutil.rmtree(old, ignore_errors=True)
        self.view.mkdir(parents=True, exist_ok=True)
        for root in self.roots:  # each staged set is a shard set as this node sees it: a reader may open its index
            (self.view / self.names[root]).mkdir(exist_ok=True)
            atomic.write_bytes(self.view / self.names[root] / "index.json", (root / "index.json").read_bytes())
        before = self.cfg.stage.mode == "before"
        self.stager = stager = Stager(
            self.items,
            streams=self.cfg.stage.streams,
            max_mb_s=self.cfg.stage.max_mb_s,
            on_ready=self._link,
            on_progress=lambda record: self.metrics.write("stage", **record),
            interrupted=self.interrupted if before else lambda: False,
            field=f"{self.section}.stage.to",
        )
        gb = stager.tally.bytes_total / 1e9
        print(f"stage ({self.cfg.stage.mode}): {len(self.items)} shards, {gb:.2f} GB to {self.cache}", flush=True)
        stager.check_space()  # before the first byte, in both modes
        if not before:
            self.thread = threading.Thread(target=self._background, args=(stager,), name="stager", daemon=True)
            self.thread.start()
            return
        try:
            tally = stager.run()
        except Cancelled:
            raise StageInterrupted("SIGUSR2 while staging: requeue") from None
        self._ready(tally)

    def _background(self, stager: Stager) -> None:
        try:
            tally = stager.run()
        except Cancelled:  # finish() stopped it: training ended first
            return
        except BaseException as exc:  # the readers waiting for shards get it through FAILED
            self._failed(exc)
            print(f"stage: {exc}", file=sys.stderr, flush=True)
            return
        self._ready(tally)

    def _ready(self, tally: Tally) -> None:
        (self.view / READY).touch()
        print(summary(tally), flush=True)

    def _link(self, item: Item) -> None:
        link = self.view / item.dest.parent.name / item.dest.name
        link.parent.mkdir(exist_ok=True)
        link.unlink(missing_ok=True)
        try:
            link.hardlink_to(item.dest)  # called under the shard's lock: the inode this stager verified
        except OSError:  # another filesystem, or one without hard links
            link.symlink_to(item.dest)

    def _failed(self, exc: BaseException) -> None:
        self.failed = True
        message = str(exc) if isinstance(exc, UserError) else f"staging failed: {exc!r}"
        self.view.mkdir(parents=True, exist_ok=True)
        (self.view / FAILED).write_text(message)

    def finish(self, wait_for_peers: bool = False) -> None:
        """Stops a stager still running and removes this node's copies (the shared cache stays).

        After a failure the view's FAILED marker stays, for the node's other ranks to read. ``wait_for_peers``:
        the node's ranks have no process group whose last barrier keeps the stager from removing copies that a
        peer still reads (a [script] step's tasks), so each says it has left and the stager waits for them.
        """
        if not self.stager_here:
            if wait_for_peers:
                with suppress(OSError):
                    self.view.mkdir(parents=True, exist_ok=True)
                    (self.view / f"left-{self.world.rank}").touch()
            return
        if wait_for_peers:
            self._wait_for_peers()
        if self.stager is not None:
            self.stager.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.failed:
            shutil.rmtree(self.node_dir / "cache", ignore_errors=True)
            for entry in self.view.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
            return
        shutil.rmtree(self.node_dir, ignore_errors=True)
        with suppress(OSError):
            self.job_dir.rmdir()  # the last node out removes the job's directory

    def _wait_for_peers(self) -> None:
        first = self.world.node * self.world.tasks_per_node
        peers = [r for r in range(first, first + self.world.tasks_per_node) if r != self.world.rank]
        deadline = time.monotonic() + PEERS_WAIT_S
        while not all((self.view / f"left-{r}").exists() for r in peers):
            if time.monotonic() > deadline:  # a peer that never says so was killed; srun ends the job anyway
                print(f"stage: ranks {peers} did not finish within {PEERS_WAIT_S:.0f} s; removing copies", flush=True)
                return
            time.sleep(POLL_S)


def wait_marker(view: Path, marker: str, interrupted: Callable[[], bool]) -> None:
    while not (view / marker).exists():
        _raise_if_failed(view)
        if interrupted():
            raise StageInterrupted("SIGUSR2 while waiting for this node's stager: requeue")
        time.sleep(POLL_S)


def wait_staged(path: Path, view: Path, timeout_s: float = STAGED_WAIT_S) -> None:
    """Waits until the stager has verified ``path`` ('ahead' mode); raises StageFailed if it gave up.

    The wait is bounded by ``timeout_s``, less than the process group's timeout (``jobs.train.timeouts``):
    this rank's peers wait for it in a collective meanwhile, and one that waits out the group's timeout
    fails with an error that names neither the shard nor staging.
    """
    started = time.monotonic()
    while not path.exists():
        _raise_if_failed(view)
        if (view / READY).exists() and not path.exists():
            raise StageFailed(
                f"staging on {socket.gethostname()} ended without {path.name}: this rank reads a shard "
                "its node did not stage"
            )
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise StageFailed(
                f"staging on {socket.gethostname()}: {path.name} still not staged after waiting {waited:.1f} s for "
                f"it; the other ranks would time out in their collectives ({COLLECTIVE_TIMEOUT_S:.0f} s) waiting "
                "for this one. Stage before training (train.stage.mode = 'before'), or copy faster "
                "(train.stage.streams, max_mb_s)"
            )
        time.sleep(POLL_S)


def _raise_if_failed(view: Path) -> None:
    try:
        message = (view / FAILED).read_text()
    except FileNotFoundError:
        return
    raise StageFailed(f"staging on {socket.gethostname()} failed: {message}")
