"""Ranks of one job, on CPU: a failing rank says why before it leaves, one GPU per rank, srun's CPUs, staging's wait.

The process groups here are real (gloo on 127.0.0.1, ``tests/gloo_ranks.py``); only a GPU's UUID,
the CUDA boundary, is made up. The same behaviour on the real SLURM cluster: ``tests/test_slurm_ranks.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.records import PartStatus, load_statuses, save_status
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.train.distributed import Dist, leaving
from clusterdeck.jobs.train.placement import check_one_gpu_each, shared_gpu
from clusterdeck.jobs.train.timeouts import COLLECTIVE_TIMEOUT_S, STAGED_WAIT_S
from tests.gloo_ranks import run_ranks

# --- a failing rank --------------------------------------------------------------------------------


def _rank_1_fails_while_rank_0_sits_in_an_all_reduce(d: Dist, result: dict[str, Any], out: str) -> None:
    """Rank 1 raises inside ``leaving``; its ``failed`` notes whether the group was still up and rank 0 still
    waiting. It then stays alive (as a rank writing its status and cleaning up does): rank 0's all-reduce
    must fail because rank 1 aborted the group, not because its process went away."""
    done0 = Path(out) / "rank0.done"

    def failed(exc: BaseException) -> None:
        result.update(failed=str(exc), failed_at=time.monotonic(), group_up=dist.is_initialized(),
                      peer_waiting=not done0.exists())  # fmt: skip

    started = time.monotonic()
    try:
        with leaving(d, failed):
            if d.rank == 1:
                d.barrier()  # rank 0 is past its own barrier too: it goes on into the all-reduce
                raise UserError("shard train-000002.tar is unreadable or corrupt")
            d.barrier()
            d.sum(torch.ones(4))
            result["reduced"] = True
    except Exception as exc:
        result["raised"] = type(exc).__name__
    result["ended_after_s"] = time.monotonic() - started
    if d.rank == 0:
        done0.touch()
    else:  # alive until rank 0 has ended, whatever happens to it
        deadline = time.monotonic() + 60
        while not done0.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def test_a_failing_rank_records_why_and_then_aborts_so_its_peer_fails_at_once(tmp_path: Path) -> None:
    group_timeout = 120
    rank0, rank1 = run_ranks(
        _rank_1_fails_while_rank_0_sits_in_an_all_reduce, 2, tmp_path, str(tmp_path), timeout_s=group_timeout
    )
    # rank 1 said why while the group was up and rank 0 still waited in it
    assert rank1["failed"] == "shard train-000002.tar is unreadable or corrupt"
    assert rank1["group_up"] and rank1["peer_waiting"] and rank1["raised"] == "UserError"
    # then rank 0's all-reduce failed, far sooner than the group's timeout, and rank 0 recorded its own failure
    assert "reduced" not in rank0 and rank0["raised"] and rank0["failed"]
    assert rank0["ended_after_s"] < group_timeout / 4, rank0


def _requeue_on_both(d: Dist, result: dict[str, Any]) -> None:
    from clusterdeck.jobs.errors import RequeueJob

    calls: list[BaseException] = []
    with contextlib.suppress(RequeueJob), leaving(d, calls.append):
        d.barrier()
        raise RequeueJob("stopped at step 3 after SIGUSR2", lambda: None)
    result.update(recorded=len(calls), group_up=dist.is_initialized())


def test_a_requeue_is_no_failure_and_leaves_the_group_with_the_peers(tmp_path: Path) -> None:
    for rank in run_ranks(_requeue_on_both, 2, tmp_path):
        assert rank == {"recorded": 0, "group_up": False}


def test_the_first_failure_of_the_latest_start_is_the_parts_status(tmp_path: Path) -> None:
    """Rank 1 failed first; rank 0 failed after it ("Connection closed by peer") and wrote its own file later:
    the part reads as rank 1's failure, with rank 0's progress and history. An older start's file counts not."""
    paths = RunPaths(tmp_path / "run")
    paths.status_dir.mkdir(parents=True)
    base = {"step": "train", "attempt": 1, "part": "main", "job_id": "7", "started_at": 100.0}
    save_status(paths, PartStatus(**base, state="FAILED", node="node2", rank=1, ended_at=130.0, exit_code=1,
                                  error="rank 1 on node2: shard x.tar is unreadable or corrupt"))  # fmt: skip
    peer_gone = "rank 0 on node1: Connection closed by peer"
    save_status(paths, PartStatus(**base, state="FAILED", node="node1", rank=0, ended_at=130.2, exit_code=1,
                                  error=peer_gone, progress={"step": 2.0}))  # fmt: skip
    assert sorted(p.name for p in paths.status_dir.iterdir()) == ["train.1.main.json", "train.1.main.rank1.json"]
    part = load_statuses(paths)[("train", 1, "main")]
    assert (part.state, part.rank, part.error) == ("FAILED", 1, "rank 1 on node2: shard x.tar is unreadable or corrupt")
    assert part.node == "node1" and part.progress == {"step": 2.0}

    # a later start of the job (SLURM requeued it) runs: rank 1's failure of the start before is history
    save_status(paths, PartStatus(**{**base, "started_at": 200.0}, restarts=1, state="RUNNING", node="node1"))
    part = load_statuses(paths)[("train", 1, "main")]
    assert (part.state, part.error, part.restarts) == ("RUNNING", "", 1)

    # rank 0 still running when rank 1's failure is read: the part has failed
    save_status(paths, PartStatus(**{**base, "started_at": 201.0}, restarts=1, state="FAILED", node="node2", rank=1,
                                  ended_at=230.0, error="rank 1 on node2: CUDA out of memory"))  # fmt: skip
    part = load_statuses(paths)[("train", 1, "main")]
    assert (part.state, part.rank, part.error) == ("FAILED", 1, "rank 1 on node2: CUDA out of memory")


# --- one GPU per rank ----------------------------------------------------------------------------


def test_two_ranks_on_one_gpu_of_one_host_are_named() -> None:
    fine = [("node1", "GPU-a"), ("node1", "GPU-b"), ("node2", "GPU-a"), ("node2", "GPU-b")]
    assert shared_gpu(fine) is None  # the same UUID on two hosts is two GPUs (a made-up UUID; real ones differ)
    error = shared_gpu([("node1", "GPU-a"), ("node1", "GPU-b"), ("node1", "GPU-a"), ("node2", "GPU-b")])
    assert error is not None
    assert str(error).startswith("ranks 0 and 2 both run on GPU GPU-a of node1: each rank needs a GPU of its own")


def _gather_places(d: Dist, result: dict[str, Any], uuids: list[str]) -> None:
    """Each rank's GPU UUID from the made-up list: the CUDA boundary; the gather over the group is real."""
    try:
        check_one_gpu_each(d.gather, "node1", torch.device("cpu"), uuid=lambda device: uuids[d.rank])
        result["error"] = ""
    except UserError as exc:
        result["error"] = str(exc)


def test_the_gpu_check_gathers_every_ranks_gpu_and_every_rank_fails_alike(tmp_path: Path) -> None:
    shared = run_ranks(_gather_places, 2, tmp_path / "shared", ["GPU-6f1c", "GPU-6f1c"])
    assert shared[0] == shared[1] and shared[0]["error"].startswith("ranks 0 and 1 both run on GPU GPU-6f1c of node1")
    own = run_ranks(_gather_places, 2, tmp_path / "own", ["GPU-6f1c", "GPU-90ab"])
    assert own == [{"error": ""}, {"error": ""}]


# --- srun gets the task's CPUs ------------------------------------------------------------------------


def test_srun_is_given_the_tasks_cpus_in_every_step(sample_shards: Path, tmp_path: Path) -> None:
    """Slurm 22.05 to 23.02 do not pass sbatch's --cpus-per-task on to srun: each step's script says it again."""
    from clusterdeck.jobs.runspec import validate
    from clusterdeck.jobs.submit import preview_run

    spec = validate({
        "name": "cpus",
        "cluster": {"executor": "slurm"},
        "shard": {"output": str(tmp_path / "set"), "train": {"input": str(tmp_path), "format": "imagefolder"},
                  "resources": {"cpus_per_task": 3}},
        "train": {"train_shards": str(tmp_path / "set"), "resources": {"cpus_per_task": 5, "gpus_per_node": 0}},
        "evaluate": {"val_shards": str(sample_shards), "resources": {"cpus_per_task": 6, "gpus_per_node": 0}},
    }, check_paths=False)  # fmt: skip
    scripts = preview_run(spec, tmp_path / "runs")
    for name, cpus in (("shard", 3), ("train", 5), ("evaluate", 6)):
        srun = next(line for line in scripts[name].splitlines() if line.startswith("srun "))
        assert f"#SBATCH --cpus-per-task={cpus}" in scripts[name] and f" --cpus-per-task={cpus} " in srun, name
        assert (" --kill-on-bad-exit=1 " in srun) == (name != "shard"), name


# --- staging 'ahead': the wait for a shard is bounded below the group's timeout --------------------------


def test_the_wait_for_a_shard_ends_before_the_peers_collectives_would(sample_shards: Path, tmp_path: Path) -> None:
    """The node's stager cannot verify one shard (the test holds its lock, as another job's stager would):
    a rank waiting for it gives up after the bound, naming the shard, the node and how long it waited;
    once the shard is there the same wait returns."""
    from clusterdeck.jobs.metrics import MetricsWriter
    from clusterdeck.jobs.runspec import validate
    from clusterdeck.jobs.stage.cache import locked, set_name, shared_cache
    from clusterdeck.jobs.stage.job import StageFailed, Staging, wait_staged
    from clusterdeck.jobs.train.shardset import read_shardset
    from clusterdeck.jobs.world import World

    assert inspect.signature(wait_staged).parameters["timeout_s"].default == STAGED_WAIT_S
    assert 0 < STAGED_WAIT_S < COLLECTIVE_TIMEOUT_S  # a waiting rank gives up before its peers time out

    node = tmp_path / "node-ssd"
    spec = validate({"name": "t", "train": {"train_shards": str(sample_shards),
                                            "stage": {"mode": "ahead", "to": str(node), "keep": True}}})  # fmt: skip
    assert spec.train is not None
    index = read_shardset(sample_shards, "t")
    train, val = index.split("train", "t"), index.split("val", "t")
    staging = Staging(spec.train, train, val, World(job_id="ahead"), 1, MetricsWriter(tmp_path / "m.jsonl"), 1)
    held_shard = staging.items[0].shard.path.name  # the first one this rank opens
    cache = shared_cache(node) / set_name(index)
    cache.mkdir(parents=True)
    with contextlib.ExitStack() as held:
        assert held.enter_context(locked(cache / held_shard, wait=False, stop=threading.Event()))
        staging.start()
        try:
            waiting = next(s for s in staging.train if s.path.name == held_shard)
            started = time.monotonic()
            with pytest.raises(StageFailed) as failed:
                wait_staged(waiting.path, staging.view, timeout_s=0.5)
            waited = time.monotonic() - started
            assert 0.5 <= waited < 10
            message = str(failed.value)
            assert message.startswith(f"staging on {socket.gethostname()}: {held_shard} still not staged after "
                                      "waiting 0.") and "train.stage.mode = 'before'" in message  # fmt: skip
            assert f"({COLLECTIVE_TIMEOUT_S:.0f} s)" in message
            held.close()  # the stager gets the lock and verifies the shard: the wait ends without an error
            wait_staged(waiting.path, staging.view, timeout_s=60)
            assert waiting.path.exists()
        finally:
            staging.finish()
