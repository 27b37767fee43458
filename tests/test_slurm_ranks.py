"""Real SLURM: the ranks of one train job, on the one-node cluster of tests/cluster/slurm-up.sh (partition gpu,
which has no GPUs: the ranks train with gloo on CPUs).

- One rank fails a few steps in (a shard only it reads is corrupt) while the other sits in the
  step's all-reduce: the run is FAILED at once, and its record names the rank and its error.
- A task asking for 2 CPUs gets them in the srun step, and ``workers = "auto"`` sizes its loader from them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.jobs.status import LIVE
from clusterdeck.jobs.train.order import rank_shards
from clusterdeck.jobs.train.shardset import read_shardset
from tests.conftest import records, require_slurm, run_cli, show, train_section, wait_for

pytestmark = pytest.mark.slurm
MODEL = "shufflenet_v2_x0_5"  # little to all-reduce on a 2-core machine


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    require_slurm()


@pytest.fixture
def timed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints the test's wall time: the issue asks for the SLURM tests' timings."""
    started = time.monotonic()
    yield
    print(f"\n[timing] {request.node.name}: {time.monotonic() - started:.1f} s")


def cpu_train_spec(tmp_path: Path, shards: Path, name: str, resources: dict[str, object], **train: object) -> Path:
    """A train job on partition gpu of the CI cluster, on CPUs (gpus_per_node = 0)."""
    resources = {"partition": "gpu", "gpus_per_node": 0, "mem_gb": 2, "time_min": 10, **resources}
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[cluster]\nexecutor = "slurm"\n'
        + train_section(shards, model=MODEL, resources=resources, **train)
    )
    return path


@pytest.mark.timeout(240)
def test_a_rank_that_fails_mid_epoch_fails_the_run_at_once_by_rank_and_error(
    sample_shards: Path, tmp_path: Path, home: Path, timed: None
) -> None:
    """Rank 1's second shard is corrupt (its first tar header): rank 1 reads it at step 3, while rank 0 is in
    step 3's all-reduce. Rank 1 records its error, then aborts the process group; rank 0 fails at once."""
    shards = tmp_path / "set"
    shutil.copytree(sample_shards, shards)
    batch_size, world = 3, 2
    mine = rank_shards(read_shardset(shards, "t").split("train", "t"), seed=0, epoch=0, world=world, rank=1)
    victim = mine[1].path  # the shard-to-rank dealing is a function of the seed: only rank 1 reads it in epoch 1
    failing_step = mine[0].samples // batch_size + 1  # workers = 0: one stream, the shards one after the other
    assert failing_step == 3, [(s.name, s.samples) for s in mine]  # a few steps in, not at the start
    data = bytearray(victim.read_bytes())
    data[0:512] = b"\x00garbage" * 64  # same size: the shard set passes its checks at submit
    victim.write_bytes(bytes(data))

    spec = cpu_train_spec(tmp_path, shards, "rankfail", {"tasks_per_node": world, "cpus_per_task": 1},
                          epochs=1, batch_size=batch_size, workers=0)  # fmt: skip
    result = run_cli("submit", str(spec), "--json")
    assert result.code == 0, result.err
    run_id, run = json.loads(result.out)["run_id"], Path(json.loads(result.out)["path"])
    try:
        wait_for("training to start", lambda: records(run / "metrics.jsonl", "train"), timeout=150)
        training = time.monotonic()
        # ended as clusterdeck counts it: REQUEUED is live too (sacct can say it of a job a moment before FAILED,
        # and a cancel then would turn the run CANCELLED)
        wait_for("the run to end", lambda: show(run_id)["state"] not in LIVE, timeout=60)
        took = time.monotonic() - training
    finally:
        run_cli("cancel", run_id)  # whatever failed above, nothing is left queued
    view = show(run_id)
    part = view["steps"][0]["parts"][0]
    assert view["state"] == "FAILED", part
    assert part["error"].startswith(f"rank 1 on {part['node']}: shard {victim} is unreadable or corrupt"), part
    # rank 0 trained the steps before it with rank 1, and sat in step 3's all-reduce when rank 1 failed
    assert [r["step"] for r in records(run / "metrics.jsonl", "train")] == list(range(1, failing_step))
    shown = run_cli("show", run_id)
    assert shown.code == 1 and f"rank 1 on {part['node']}: shard {victim} is unreadable or corrupt" in shown.out
    job_id = view["steps"][0]["job_ids"][0]
    err = (run / "submitit" / f"{job_id}_1_log.err").read_text()
    assert f"[clusterdeck] train main failed: rank 1 on {part['node']}: shard {victim} is unreadable" in err
    assert "Traceback" not in err  # a UserError: one line
    print(f"\n[timing] from the first train record to FAILED in `clusterdeck show`: {took:.1f} s")


@pytest.mark.timeout(240)
def test_a_task_given_2_cpus_sees_them_and_auto_sizes_its_loader_from_them(
    sample_shards: Path, tmp_path: Path, home: Path, timed: None
) -> None:
    """sbatch -c 2, and srun -c 2 again (Slurm 22.05 to 23.02 do not pass it on): the step has 2 CPUs per task,
    the task may run on both, and ``workers = "auto"`` gives one loader worker (2 CPUs, one for training)."""
    sinfo = subprocess.run(["sinfo", "-h", "-p", "gpu", "-o", "%c"], capture_output=True, text=True).stdout
    cpus = int(sinfo.split()[0])
    assert cpus >= 2, f"partition gpu's node has {cpus} CPUs; this test needs 2"
    spec = cpu_train_spec(tmp_path, sample_shards, "cpus", {"tasks_per_node": 1, "cpus_per_task": 2},
                          epochs=1, batch_size=24, workers="auto")  # fmt: skip
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=220)
    assert result.code == 0, result.err
    view = json.loads(result.out)
    assert view["state"] == "COMPLETED", view["steps"][0]["parts"]
    job_id = view["steps"][0]["job_ids"][0]
    log = (Path(view["path"]) / "submitit" / f"{job_id}_0_log.out").read_text()
    assert "train loader: decode cpu, 1 worker(s) per task (2 CPUs)" in log, log
    # the srun step itself was given the 2 CPUs (with task/affinity or task/cgroup, it is bound to them)
    steps = subprocess.run(["sacct", "-n", "-P", "-o", "JobID,AllocCPUS", "-j", job_id], capture_output=True,
                           text=True).stdout  # fmt: skip
    step0 = re.search(rf"^{job_id}\.0\|(\d+)$", steps, re.M)
    assert step0 and step0[1] == "2", steps
