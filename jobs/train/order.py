"""Which shards each rank and loader worker reads in an epoch, and how many batches: pure functions of the seed.

The order of an epoch is a function of (seed, epoch, world size, rank, workers), never of
timing, so a resumed job replays it exactly and skips what the interrupted one consumed:

- the train shards are permuted by (seed, epoch) and dealt to ranks round-robin, then to
  the rank's loader workers round-robin; with stage scope 'node' each node first gets a
  fixed share (so it stages only that) and the permutation runs within the node;
- every rank runs the same number of batches, ``steps × grad_accum``, from the global sample
  count; a rank whose shards hold fewer samples reads them again (a new shuffle), one with
  more leaves the rest for other epochs. No rank waits for another at the end of an epoch;
- DataLoader takes batches from its workers in turn, so batch ``j`` of a rank comes from
  worker ``j % W``; each worker makes exactly its share and the stream order is fixed. A
  resumed epoch lists the workers starting from the one that made the next batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.steps.train_spec import Staged
from clusterdeck.jobs.train.shardset import Shard


def steps_per_epoch(samples: int, world: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps per epoch, the same on every rank; a usage error when the data is too small."""
    per_step = world * batch_size * grad_accum
    steps = samples // per_step
    if steps == 0:
        raise UserError(
            f"train.batch_size: {batch_size} per task × {world} task(s) × grad_accum {grad_accum} = {per_step} samples "
            f"per step, but the train split has only {samples}; lower train.batch_size or grad_accum"
        )
    return steps


@dataclass(frozen=True)
class WorkerShare:
    shards: list[Shard]
    batches: int
    """Batches this worker makes in the epoch."""
    skip: int
    """Of those, how many the interrupted attempt already trained on."""


def _share(batches: int, worker: int, workers: int) -> int:
    """How many of batches 0 … n-1 have ``j % workers == worker``."""
    return max(0, (batches - worker + workers - 1) // workers)


def split_workers(shards: list[Shard], workers: int) -> int:
    return max(1, min(workers, len(shards)))


def node_shards(shards: list[Shard], *, seed: int, nodes: int, node: int) -> list[Shard]:
    """Stage scope 'node': the shards one node holds, the same in every epoch, dealt from a seeded permutation."""
    order = list(shards)
    random.Random(f"{seed}:nodes").shuffle(order)
    return order[node::nodes]


def rank_shards(shards: list[Shard], *, seed: int, epoch: int, world: int, rank: int, nodes: int = 1) -> list[Shard]:
    """The train shards ``rank`` reads in ``epoch``.

    ``nodes`` > 1 (stage scope 'node'): each node keeps its fixed share (``node_shards``) and
    permutes it among its own ranks each epoch; ranks are numbered node by node, as srun does.
    """
    if len(shards) < world:
        raise UserError(
            f"train.train_shards: {len(shards)} train shards for {world} tasks; every task needs at least one "
            "(shard again with a smaller shard.shard_size_mb or max_samples)"
        )
    if nodes == 1:
        order = list(shards)
        random.Random(f"{seed}:{epoch}").shuffle(order)
        return order[rank::world]
    per_node = world // nodes
    node, local = divmod(rank, per_node)
    held = node_shards(shards, seed=seed, nodes=nodes, node=node)
    if len(held) < per_node:
        raise UserError(
            f"train.stage.scope: 'node' gives node {node} {len(held)} of {len(shards)} train shards for its "
            f"{per_node} tasks; every task needs at least one (use scope 'all', or shard into more shards)"
        )
    random.Random(f"{seed}:{epoch}:node{node}").shuffle(held)
    return held[local::per_node]


def share_nodes(cfg: Staged, nodes: int) -> int:
    """The ``nodes`` argument of ``rank_shards``: the job's node count under stage scope 'node', else 1."""
    return nodes if cfg.stage.mode != "none" and cfg.stage.scope == "node" else 1


def train_shares(
    shards: list[Shard],
    *,
    seed: int,
    epoch: int,
    world: int,
    rank: int,
    workers: int,
    batches: int,
    done: int = 0,
    nodes: int = 1,
) -> list[WorkerShare]:
    """The loader workers' shares of one rank's epoch; ``done`` batches were already trained on."""
    mine = rank_shards(shards, seed=seed, epoch=epoch, world=world, rank=rank, nodes=nodes)
    n = split_workers(mine, workers)
    shares = [WorkerShare(mine[w::n], _share(batches, w, n), _share(done, w, n)) for w in range(n)]
    # DataLoader asks worker 0 first; after ``done`` batches the next one is worker ``done % n``'s.
    first = done % n
    return shares[first:] + shares[:first]


def val_shares(shards: list[Shard], *, world: int, rank: int, workers: int) -> list[list[Shard]]:
    """Val shards by worker: every val sample is read by exactly one worker of exactly one rank."""
    mine = shards[rank::world]
    n = split_workers(mine, workers)
    return [mine[w::n] for w in range(n)] if mine else []
