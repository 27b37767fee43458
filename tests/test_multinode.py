"""Real SLURM on several nodes: partition ``multi`` of tests/cluster/slurm-up.sh.

Its nodes (node1, node2) are slurmds on this machine, each in its own UTS and mount namespace
(tests/cluster/node.sh): its own hostname and its own node-local /local-ssd, every other file
shared, as cluster nodes share NFS. So a 2-node DDP job really runs ranks on two hosts that
cannot see each other's local disk, and a node can really be lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.jobs.dispatch.base import JobState
from clusterdeck.jobs.dispatch.slurm import node_failures, parse_sacct
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.stage.cache import set_name
from clusterdeck.jobs.train.order import node_shards
from clusterdeck.jobs.train.shardset import read_shardset
from tests.conftest import (
    REPO,
    assert_same_as_one_local_task,
    records,
    require_slurm,
    run_cli,
    shard_spec,
    show,
    train_section,
    wait_for,
)

NODE_SH = REPO / "tests" / "cluster" / "node.sh"
LOCAL = Path("/local-ssd")
# A model small enough that two ranks on a loaded 2-core machine exchange little (gloo all-reduces every step).
MODEL = "shufflenet_v2_x0_5"


@pytest.fixture(scope="module")
def nodes() -> list[str]:
    """The nodes of partition multi, which slurm-up.sh brings up; a missing one fails, it does not skip."""
    require_slurm()
    out = subprocess.run(["sinfo", "-h", "-N", "-p", "multi", "-o", "%N"], capture_output=True, text=True).stdout
    names = sorted(set(out.split()))
    assert len(names) >= 2, f"partition multi has nodes {names}; run tests/cluster/slurm-up.sh"
    return names[:2]


@pytest.fixture
def timed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints the test's wall time: the issue asks for the multi-node tests' timings."""
    started = time.monotonic()
    yield
    print(f"\n[timing] {request.node.name}: {time.monotonic() - started:.1f} s")


def node_sh(command: str, node: str) -> str:
    result = subprocess.run(["bash", str(NODE_SH), command, node], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def train_spec(tmp_path: Path, shards: Path, name: str, **train: object) -> Path:
    """A CPU DDP job of one rank on each of two nodes of partition multi, staging scope 'node' to /local-ssd."""
    resources = {"partition": "multi", "nodes": 2, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1,
                 "mem_gb": 1, "time_min": 10, **train.pop("resources", {})}  # type: ignore[dict-item]  # fmt: skip
    stage = {"mode": "before", "scope": "node", "to": str(LOCAL), **train.pop("stage", {})}  # type: ignore[dict-item]
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[cluster]\nexecutor = "slurm"\n'
        + train_section(shards, model=MODEL, batch_size=8, workers=0, resources=resources, stage=stage, **train)
    )
    return path


def rank_logs(run: Path, job_id: str) -> list[str]:
    return [(run / "submitit" / f"{job_id}_{rank}_log.out").read_text() for rank in (0, 1)]


def start_line(log: str, rank: int) -> re.Match[str]:
    found = re.search(
        rf"^\[clusterdeck\] train main \((attempt \d+[^)]*)\) rank {rank} on (\S+), job (\d+)$", log, re.M
    )
    assert found, log
    return found


def node_local_files(nodes: list[str], directory: Path) -> dict[str, list[str]]:
    """``directory`` as each node sees it, read by a job step on every node (and then removed there)."""
    out = subprocess.run(
        ["srun", "-p", "multi", f"--nodelist={','.join(nodes)}", "-N", str(len(nodes)), "--ntasks-per-node=1",
         "-c", "1", "--mem=64M", "-t", "2", "-l", "sh", "-c", 'echo "host $(hostname)"; ls "$0"; rm -rf "$0"',
         str(directory)],
        capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    by_task: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        task, _, text = line.partition(": ")
        by_task.setdefault(task.strip(), []).append(text)
    return {lines[0].removeprefix("host "): sorted(lines[1:]) for lines in by_task.values()}


@pytest.mark.slurm
def test_two_nodes_train_one_ddp_job_each_staging_only_its_share(
    nodes: list[str], sample_shards: Path, tmp_path: Path, home: Path, timed: None
) -> None:
    # A shard set of its own: keep = true leaves the copies in each node's cache, under the set's name.
    shards = tmp_path / f"set-{uuid.uuid4().hex[:8]}"
    shutil.copytree(sample_shards, shards)
    index = read_shardset(shards, "t")
    cache = LOCAL / "clusterdeck" / "cache" / set_name(index)
    spec = train_spec(tmp_path, shards, "ddp2", epochs=1, stage={"keep": True})
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=280)
    assert result.code == 0, result.err
    view = json.loads(result.out)
    run, job_id = Path(view["path"]), view["steps"][0]["job_ids"][0]
    assert view["state"] == "COMPLETED", view["steps"][0]["parts"]
    logs = rank_logs(run, job_id)

    # ranks 0 and 1 on two hosts, in node order; a first start says nothing of restarts
    starts = [start_line(log, rank) for rank, log in enumerate(logs)]
    assert [s[2] for s in starts] == nodes and all(s[1] == "attempt 1" for s in starts)
    assert all("restart" not in log and "requeue" not in log for log in logs)

    # both ranks end with the same weights
    digests = [re.findall(rf"rank {rank}: final weights sha256 (\w+)", log) for rank, log in enumerate(logs)]
    assert digests[0] and digests[0] == digests[1]
    assert records(run / "metrics.jsonl", "final")[0]["weights_sha256"] == digests[0] * 2
    # each val sample counted once, across the two nodes
    assert records(run / "metrics.jsonl", "epoch")[-1]["val_samples"] == 24

    # each node's local disk holds its own share of the train shards and its ranks' val shards; the
    # machine's own /local-ssd (and so the other node's) none of them
    train, val = index.splits["train"], index.splits["val"]
    seen = node_local_files(nodes, cache)
    assert not cache.exists()
    for k, node in enumerate(nodes):
        share = {s.path.name for s in node_shards(train, seed=0, nodes=2, node=k)} | {s.path.name for s in val[k::2]}
        assert seen[node] == sorted(share), node
    first, second = ({n for n in seen[node] if n.startswith("train")} for node in nodes)
    assert first.isdisjoint(second) and first | second == {s.path.name for s in train}

    # each node's stager printed its summary, with the rate of its copy (it said "0 MB/s")
    for log, n in zip(logs, (len(seen[node]) for node in nodes), strict=True):
        found = re.search(rf"stage: {n}/{n} shards ready, [\d.]+ GB in [\d.]+ s \(([\d.]+) MB/s\)", log)
        assert found and float(found[1]) > 0, log

    # telemetry from both hosts: one file per rank, written on that rank's node
    for rank, node in enumerate(nodes):
        samples = [json.loads(x) for x in (run / "telemetry" / f"{job_id}_{rank}.jsonl").open()]
        assert samples and {r["node"] for r in samples} == {node}
        assert all("disk_read_mb_s" in r for r in samples)  # each is its node's local rank 0: node-wide figures too


@pytest.mark.slurm
@pytest.mark.timeout(480)
def test_a_lost_node_fails_the_job_by_name_and_resume_finishes_it(
    nodes: list[str], sample_shards: Path, tmp_path: Path, home: Path, timed: None
) -> None:
    """node2's slurmd and its job processes are killed mid-run: NODE_FAIL naming node2, then resume.

    ``--no-requeue``: the cluster would requeue the job itself, and SLURM then delivers the old step's
    kill (asked for while node2 was gone) to the new run of the same step id when node2 is back.
    """
    epochs, lost = 3, nodes[1]
    spec = train_spec(tmp_path, sample_shards, "loss", epochs=epochs, resources={"extra_sbatch": ["--no-requeue"]})
    result = run_cli("submit", str(spec), "--json")
    assert result.code == 0, result.err
    run_id, run = json.loads(result.out)["run_id"], Path(json.loads(result.out)["path"])
    job_id = json.loads(result.out)["steps"][0]["job_ids"][0]
    try:
        wait_for("epoch 1's checkpoint", lambda: records(run / "metrics.jsonl", "epoch"), timeout=240)
        # frozen at once (rank 1 with them), so rank 0 stalls at its next all-reduce: epochs 2 and 3 cannot
        # finish while `node.sh kill` runs, however fast this machine trains
        for pid in node_sh("pids", lost).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGSTOP)
        node_sh("kill", lost)
        assert not records(run / "metrics.jsonl", "final"), "the run ended before the node was lost"
        assert not node_sh("pids", lost).strip()  # slurmd and the job's processes there are gone

        def failed_by_name() -> bool:  # sacct's NODE_FAIL can come before the node's event that names it
            view = show(run_id)
            part = view["steps"][0]["parts"][0]
            return view["state"] == "NODE_FAIL" and part["error"] == f"node {lost} (Not responding) failed"

        wait_for("NODE_FAIL naming the lost node", failed_by_name, timeout=150)
        part = show(run_id)["steps"][0]["parts"][0]
        assert part["state"] == "NODE_FAIL" and f"node {lost} (Not responding) failed" == part["error"]
        last = records(run / "metrics.jsonl", "checkpoint")[-1]  # what resume starts from: rank 0 is gone now too
        shown = run_cli("show", run_id)
        assert shown.code == 1 and f"node {lost} (Not responding) failed" in shown.out
        sacct = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True,
                               text=True).stdout.split()  # fmt: skip
        assert sacct == ["NODE_FAIL"]
    finally:
        node_sh("up", lost)  # back in service (a fresh namespace, an empty /local-ssd) for the tests after this

    resumed = run_cli("resume", run_id, "--json")
    assert resumed.code == 0, resumed.err
    wait_for("the resumed run", lambda: show(run_id)["state"] in ("COMPLETED", "FAILED", "CANCELLED"), timeout=240)
    view = show(run_id)
    step = view["steps"][0]
    assert view["state"] == "COMPLETED", step["parts"]
    assert step["attempt"] == 2 and step["job_ids"] != [job_id]
    epochs_done = [r["epoch"] for r in records(run / "metrics.jsonl", "epoch")]
    assert epochs_done == list(range(1, epochs + 1))  # each asked epoch, once
    assert step["parts"][0]["progress"]["resumed_from_step"] == last["step"]
    logs = rank_logs(run, step["job_ids"][0])
    assert f"resuming from {run}/checkpoints/last.pt: epoch {last['epoch'] + 1}, step {last['step']}" in logs[0]
    assert [start_line(log, rank)[2] for rank, log in enumerate(logs)] == nodes
    final = records(run / "metrics.jsonl", "final")
    assert len(final) == 1 and len(set(final[0]["weights_sha256"])) == 1


@pytest.mark.slurm
def test_a_shard_array_on_two_nodes_merges_its_index(
    nodes: list[str], sample_data: SampleData, tmp_path: Path, home: Path, timed: None
) -> None:
    out = tmp_path / "shards"
    resources = (
        '[shard.resources]\npartition = "multi"\ncpus_per_task = 1\nmem_gb = 1\ntime_min = 10\narray_tasks = 2\n'
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_spec(sample_data, out, name="multi shards") + resources)
    result = run_cli("submit", str(spec), "--executor", "slurm", "--wait", "--json", timeout=240)
    assert result.code == 0, result.err
    step = json.loads(result.out)["steps"][0]
    assert [p["part"] for p in step["parts"]] == ["task-0", "task-1", "merge"]
    assert all(p["state"] == "COMPLETED" for p in step["parts"]), step["parts"]
    # one CPU per node: the two tasks, started together, each had a node of its own
    assert sorted(p["node"] for p in step["parts"][:2]) == nodes

    local_out = tmp_path / "local"  # the merged set is the one a single local task writes
    assert_same_as_one_local_task(spec, out, local_out)


def test_a_requeued_job_reads_as_its_latest_run_and_names_its_lost_node() -> None:
    """``sacct -D`` lists every run of a requeued job; the state is the latest one's, the NODE_FAIL run is kept."""
    text = (
        "35|NODE_FAIL|0:0|node[1-2]|None|2026-12-06T04:03:07|2026-12-06T04:03:58\n"
        "35|PENDING|0:0|None assigned|BeginTime|Unknown|Unknown\n"
        "36|COMPLETED|0:0|vm|None|2026-12-06T04:05:00|2026-12-06T04:06:00\n"
    )
    states = parse_sacct(text)
    assert (states["35"].state, states["35"].node, states["35"].reason) == ("PENDING", "", "BeginTime")
    assert states["36"].state == "COMPLETED"
    assert node_failures(text) == {"35": ("node[1-2]", "2026-12-06T04:03:07", "2026-12-06T04:03:58")}


@pytest.mark.slurm
def test_a_job_slurm_requeued_after_losing_its_node_reads_as_pending_with_the_node_named(
    nodes: list[str], timed: None
) -> None:
    """Without ``sacct -D`` such a job read NODE_FAIL while it waited to run again: a resume would start a twin."""
    from clusterdeck.jobs.dispatch.slurm import sacct_states

    lost = nodes[1]
    job_id = subprocess.run(
        ["sbatch", "--parsable", "-p", "multi", "-w", lost, "-c", "1", "--mem=64M", "-t", "5", "-o", "/dev/null",
         "--requeue", "-J", "cd-node-loss", "--wrap", "sleep 300"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        wait_for("the job to run", lambda: sacct_states([job_id]).get(job_id, JobState("")).state == "RUNNING", 60)
        node_sh("kill", lost)
        wait_for("the requeue", lambda: sacct_states([job_id])[job_id].node_failure, timeout=150)
        state = sacct_states([job_id])[job_id]
        assert state.state == "PENDING" and state.node_failure == f"node {lost} (Not responding) failed"
    finally:
        subprocess.run(["scancel", job_id], check=False)
        node_sh("up", lost)


def test_rank_1_reading_rank_0s_record_of_the_same_start_is_no_restart() -> None:
    """Rank 1 started a moment after rank 0 had written this start's status, and said "restart 1"."""
    from clusterdeck.jobs.payloads import _earlier_starts
    from clusterdeck.jobs.records import PartStatus
    from clusterdeck.jobs.world import World

    rank0 = PartStatus(step="train", attempt=1, part="main", state="RUNNING", node="node1", job_id="7", started_at=1.0)
    assert _earlier_starts(rank0, World(rank=1, world=2, job_id="7")) == []
    after_requeue = World(rank=0, world=2, job_id="7", restarts=1)
    assert [(s.job_id, s.node) for s in _earlier_starts(rank0, after_requeue)] == [("7", "node1")]
    assert _earlier_starts(None, after_requeue) == []


def test_the_lost_node_is_the_error_while_it_explains_the_jobs_state() -> None:
    from clusterdeck.jobs.records import PartStatus
    from clusterdeck.jobs.status import _error

    lost = "node node2 (Not responding) failed"
    rank0 = PartStatus(step="train", attempt=1, part="main", state="FAILED", node="node1", started_at=1.0,
                       error="Connection closed by peer")  # fmt: skip
    assert _error(rank0, JobState("NODE_FAIL", node_failure=lost)) == lost
    assert _error(rank0, JobState("PENDING", node_failure=lost)) == f"{lost}; SLURM requeued the job"
    assert _error(rank0, JobState("FAILED", node_failure=lost)) == "Connection closed by peer"  # a later run's own
