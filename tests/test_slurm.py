"""Real SLURM: the one-node cluster that tests/cluster/slurm-up.sh starts (slurmctld, slurmd, slurmdbd)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clusterdeck.jobs.runspec import load_spec
from clusterdeck.jobs.sample_data import SampleData, make_devkit, make_train_tar, make_val_tar
from tests.conftest import (
    assert_same_as_one_local_task,
    copy_with_stuck_file,
    end_releasing_requeues,
    records,
    require_slurm,
    run_cli,
    shard_spec,
    show,
    train_section,
)

pytestmark = pytest.mark.slurm
RESOURCES = """
[shard.resources]
partition = "cpu"
cpus_per_task = 1
mem_gb = 1
time_min = 10
"""


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    require_slurm()


def write_spec(tmp_path: Path, data: SampleData, out: Path, extra: str = "") -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(shard_spec(data, out, name="slurm shards") + RESOURCES + extra)
    return path


def poll(run_id: str, predicate, timeout: float = 90.0) -> dict:  # type: ignore[no-untyped-def]
    """sacct lags the jobs by up to a few seconds: poll ``show`` until the expected state is there."""
    deadline = time.monotonic() + timeout
    while True:
        view = show(run_id)
        if predicate(view) or time.monotonic() > deadline:
            return view
        time.sleep(0.5)


def submission_script(run_path: str, job_id: str) -> str:
    return (Path(run_path) / "submitit" / f"{job_id}_submission.sh").read_text()


def test_shard_run_completes_on_slurm(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    out = tmp_path / "shards"
    result = run_cli("submit", str(write_spec(tmp_path, sample_data, out)), "--executor", "slurm", "--wait", "--json")
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["run_id"]
    view = poll(run_id, lambda v: v["steps"][0]["parts"][0]["exit_code"] == "0:0")
    step = view["steps"][0]
    part = step["parts"][0]
    job_id = step["job_ids"][0]
    assert view["state"] == step["state"] == part["state"] == "COMPLETED"
    assert job_id.isdigit() and part["job_id"] == job_id
    assert part["node"] == os.uname().nodename.split(".")[0]
    assert part["exit_code"] == "0:0"  # sacct's form: the state came from the accounting database
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State,NodeList", "-j", job_id], capture_output=True, text=True
    ).stdout.strip()
    assert sacct == f"COMPLETED|{part['node']}"
    script = submission_script(view["path"], job_id)
    for line in ("#SBATCH --partition=cpu", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=1024M", "#SBATCH --time=10"):
        assert line in script
    assert json.loads((out / "index.json").read_text())["splits"]["train"]["samples"] == 72


def test_array_shard_run_merges_its_index(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    """ImageNet as downloaded (the train and val tars, the devkit), read in place by three array tasks."""
    out = tmp_path / "shards"
    text = shard_spec(sample_data, out, name="slurm shards")
    train, val = text.index("[shard.train]"), text.index("[shard.val]")
    tars = tmp_path / "ilsvrc"
    tars.mkdir()
    text = text[:train] + (
        f'[shard.train]\ninput = "{make_train_tar(sample_data, tars / "ILSVRC2012_img_train.tar")}"\n'
        'format = "ilsvrc-train-tar"\n'
        f'[shard.val]\ninput = "{make_val_tar(sample_data, tars / "ILSVRC2012_img_val.tar")}"\n'
        f'format = "ilsvrc-val-tar"\ndevkit = "{make_devkit(sample_data, tars / "ILSVRC2012_devkit_t12.tar.gz")}"\n'
    )
    assert val > train
    spec = tmp_path / "spec.toml"
    spec.write_text(text + RESOURCES + "array_tasks = 3\n")
    result = run_cli("submit", str(spec), "--executor", "slurm", "--wait", "--json")
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["run_id"]
    view = poll(run_id, lambda v: all(p["exit_code"] == "0:0" for p in v["steps"][0]["parts"]))
    step = view["steps"][0]
    array_id, merge_id = step["job_ids"]
    assert [p["part"] for p in step["parts"]] == ["task-0", "task-1", "task-2", "merge"]
    assert [p["job_id"] for p in step["parts"]] == [f"{array_id}_{k}" for k in range(3)] + [merge_id]
    assert all(p["state"] == "COMPLETED" and p["exit_code"] == "0:0" for p in step["parts"])
    assert f"#SBATCH --dependency=afterok:{array_id}" in submission_script(view["path"], merge_id)
    assert "#SBATCH --array=0-2%3" in submission_script(view["path"], array_id)

    # The merged shard set is the one a single local task writes from the same spec.
    local_out = tmp_path / "local"
    assert_same_as_one_local_task(spec, out, local_out)
    index = json.loads((out / "index.json").read_text())
    assert index["splits"]["train"]["samples"] == 72 and index["splits"]["val"]["samples"] == 24


def test_cancel_a_running_slurm_job(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    data, _ = copy_with_stuck_file(sample_data, tmp_path, 1, 3)
    result = run_cli(
        "submit",
        str(write_spec(tmp_path, data, tmp_path / "o")),
        "--executor",
        "slurm",
        "--json",
    )
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["run_id"]
    assert poll(run_id, lambda v: v["state"] == "RUNNING")["state"] == "RUNNING"
    assert run_cli("cancel", run_id).code == 0
    view = poll(run_id, lambda v: v["state"] == "CANCELLED" and v["steps"][0]["parts"][0]["exit_code"])
    assert view["state"] == view["steps"][0]["state"] == "CANCELLED"
    job_id = view["steps"][0]["job_ids"][0]
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True
    ).stdout
    assert sacct.startswith("CANCELLED")
    assert run_cli("show", run_id).code == 1


def test_an_impossible_request_is_a_clear_error(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    spec = write_spec(tmp_path, sample_data, tmp_path / "o")
    # a feature no node has: sbatch refuses it (an unknown partition is refused before, tests/test_slurm_preflight.py)
    result = run_cli("submit", str(spec), "--executor", "slurm", "--set", 'shard.resources.constraint="nosuch"')
    assert result.code == 2
    assert "submission to slurm failed" in result.err and "feature" in result.err.lower()
    assert "Traceback" not in result.err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def train_spec(tmp_path: Path, shards: Path, name: str, **train: object) -> Path:
    """A CPU train job on the CI cluster's ``gpu`` partition (it has no GPUs: gpus_per_node = 0)."""
    resources = {"partition": "gpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 2, "time_min": 10}
    resources.update(train.pop("resources", {}))  # type: ignore[arg-type]
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[cluster]\nexecutor = "slurm"\n'
        + train_section(shards, resources=resources, **{"batch_size": 4, "workers": 0, **train})
    )
    return path


def metrics(view: dict, kind: str) -> list[dict]:
    lines = (Path(view["path"]) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_two_tasks_train_as_one_ddp_job(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    """Two ranks on one node: local rank 0 stages the shards first, rank 1 waits for it, both read the copies."""
    ssd = tmp_path / "ssd"
    stage = {"mode": "before", "to": str(ssd)}
    spec = train_spec(tmp_path, sample_shards, "ddp", resources={"tasks_per_node": 2}, stage=stage)
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=240)
    assert result.code == 0, result.err
    view = json.loads(result.out)
    job_id = view["steps"][0]["job_ids"][0]
    script = submission_script(view["path"], job_id)
    assert "#SBATCH --ntasks-per-node=2" in script and "--kill-on-bad-exit=1" in script
    logs = [Path(view["path"]) / "submitit" / f"{job_id}_{rank}_log.out" for rank in (0, 1)]
    digests = [re.findall(r"rank \d: final weights sha256 (\w+)", log.read_text()) for log in logs]
    assert digests[0] and digests[0] == digests[1]  # both processes ended with the same weights
    final = metrics(view, "final")[0]
    assert final["weights_sha256"] == [digests[0][0]] * 2
    assert [r["step"] for r in metrics(view, "train")] == list(range(1, 19))  # 72 samples / (2 tasks × 4) × 2 epochs
    assert metrics(view, "epoch")[-1]["val_samples"] == 24  # each val sample counted once across the two ranks
    staged = metrics(view, "stage")
    assert {r["rank"] for r in staged} == {0} and staged[-1]["done"]  # one stager on the node
    assert staged[-1]["copied"] == len(list(sample_shards.glob("*.tar")))
    assert staged[-1]["time"] < metrics(view, "train")[0]["time"]
    n = staged[-1]["files_total"]
    assert f"stage: {n}/{n} shards ready" in logs[0].read_text() and "stage" not in logs[1].read_text()
    assert not list((ssd / "clusterdeck").iterdir())  # keep = false: the job removed its copies
    # telemetry: one file per task, node-wide figures from local rank 0 only; logs of one rank
    for rank in (0, 1):
        samples = [json.loads(x) for x in (Path(view["path"]) / "telemetry" / f"{job_id}_{rank}.jsonl").open()]
        assert samples and {r["kind"] for r in samples} == {"system"} and {r["rank"] for r in samples} == {rank}
        assert all(("disk_read_mb_s" in r) == (rank == 0) for r in samples)
    rank1 = run_cli("logs", view["run_id"], "--rank", "1")
    assert rank1.code == 0 and rank1.out.splitlines() == [
        f"==> job {job_id} rank 1 (out) <==",
        *logs[1].read_text().splitlines(),
    ]


def test_a_train_job_signalled_mid_epoch_requeues_and_resumes(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    """USR2, the signal SLURM sends ``signal_delay_s`` before the time limit, sent once training is mid-epoch: the
    job checkpoints, requeues itself (same job id), resumes from the checkpoint and ends with exactly its epochs.

    Nothing waits for a time limit, and nothing depends on how fast the job trains: it stages 'ahead' into a
    node cache where the test holds the lock of a shard from the middle of epoch 1 (as another job's stager
    would), so training cannot get past that shard until the job's log says the signal arrived. The signal
    is sent once a train record proves the handler installed; the job then stops at the next step, mid-epoch.
    """
    from clusterdeck.jobs.stage.cache import locked, set_name, shared_cache
    from clusterdeck.jobs.train.order import rank_shards
    from clusterdeck.jobs.train.shardset import read_shardset

    deadline = time.monotonic() + 240  # under pytest's 300 s timeout: a hang fails here, with the run's state
    epochs, per_epoch = 2, 9  # 72 samples, 8 a batch
    node = tmp_path / "node-ssd"
    index = read_shardset(sample_shards, "t")
    order = rank_shards(index.split("train", "t"), seed=0, epoch=0, world=1, rank=0)  # epoch 1's, as the job reads
    held_shard = order[len(order) // 2]  # after step 1's samples, before step 9's
    cache = shared_cache(node) / set_name(index)
    cache.mkdir(parents=True)
    spec = train_spec(
        tmp_path, sample_shards, "requeue", epochs=epochs, batch_size=8, log_every_steps=1, max_requeues=5,
        resources={"signal_delay_s": 30}, stage={"mode": "ahead", "to": str(node), "keep": True},
    )  # fmt: skip
    with contextlib.ExitStack() as held:
        assert held.enter_context(locked(cache / held_shard.path.name, wait=False, stop=threading.Event()))
        result = run_cli("submit", str(spec), "--json")
        assert result.code == 0, result.err
        run_id, run_path = json.loads(result.out)["run_id"], Path(json.loads(result.out)["path"])
        job_id = json.loads(result.out)["steps"][0]["job_ids"][0]
        assert "#SBATCH --signal=USR2@30" in submission_script(str(run_path), job_id)  # the signal sent below
        err = run_path / "submitit" / f"{job_id}_0_log.err"
        try:
            while not (first := records(run_path / "metrics.jsonl", "train")):
                assert time.monotonic() < deadline, f"no train record: {show(run_id)}"
                time.sleep(0.05)
            subprocess.run(["scancel", "--signal=USR2", job_id], check=True, capture_output=True)
            while "[clusterdeck] SIGUSR2 received" not in (err.read_text() if err.exists() else ""):
                assert time.monotonic() < deadline, f"the signal never arrived: {show(run_id)}"
                time.sleep(0.05)
            held.close()  # the held shard is staged now; training goes on and stops at the next step
            view = end_releasing_requeues(run_id, job_id, deadline)
        finally:
            run_cli("cancel", run_id)  # whatever failed above, nothing is left queued
    part = view["steps"][0]["parts"][0]
    assert view["state"] == "COMPLETED", part
    assert part["job_id"] == job_id and len(part["history"]) == 1, f"requeued {len(part['history'])} times: {part}"
    assert part["history"][0]["state"] == "REQUEUED" and part["history"][0]["job_id"] == job_id
    steps = [r["step"] for r in metrics(view, "train")]
    assert steps == list(range(1, epochs * per_epoch + 1))  # no step twice, none missing
    assert [r["epoch"] for r in metrics(view, "epoch")] == list(range(1, epochs + 1))
    resumed = int(part["progress"]["resumed_from_step"])
    assert first[0]["step"] <= resumed < per_epoch  # stopped in the first epoch, after the signal
    assert resumed in {r["step"] for r in metrics(view, "checkpoint")}
    log = (run_path / "submitit" / f"{job_id}_0_log.out").read_text()
    assert f"[clusterdeck] train main: stopped at step {resumed} after SIGUSR2; checkpoint saved; requeueing" in log
    assert f"resuming from {run_path}/checkpoints/last.pt: epoch 1, step {resumed}" in log


def test_the_apps_preview_is_the_script_sbatch_gets(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    from clusterdeck.jobs.submit import preview_run

    resources = {"partition": "cpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "time_min": 5}
    spec_file = tmp_path / "held.toml"
    spec_file.write_text(
        'name = "held"\n[cluster]\nexecutor = "slurm"\n'
        + train_section(sample_shards, resources={**resources, "extra_sbatch": ["--hold"]})
    )
    preview = preview_run(load_spec(spec_file))
    result = run_cli("submit", str(spec_file), "--json")
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["run_id"]
    try:
        job_id = show(run_id)["steps"][0]["job_ids"][0]
        written = (home / "runs" / run_id / "submitit" / f"{job_id}_submission.sh").read_text()
        assert "#SBATCH --hold" in written
        assert written == preview["train"].replace("RUN_ID", run_id)
    finally:
        run_cli("cancel", run_id)


def test_an_export_step_runs_after_the_shard_step_on_its_output(
    sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    from tests.test_export import check_mtd

    shards, out = tmp_path / "shards", tmp_path / "systemds"
    export = f"""
[export]
out = "{out}"
samples = 50
image_size = 8
workers = 1
[export.resources]
partition = "cpu"
cpus_per_task = 1
mem_gb = 1
time_min = 10
"""
    result = run_cli("submit", str(write_spec(tmp_path, sample_data, shards, export)), "--executor", "slurm", "--wait",
                     "--json")  # fmt: skip
    assert result.code == 0, result.err
    view = json.loads(result.out)
    assert [s["name"] for s in view["steps"]] == ["shard", "export"]
    assert all(s["state"] == "COMPLETED" for s in view["steps"])
    export_job = view["steps"][1]["job_ids"][0]
    script = submission_script(view["path"], export_job)
    assert f"#SBATCH --dependency=afterok:{view['steps'][0]['job_ids'][0]}" in script
    for part in ("train", "train_labels", "val", "val_labels"):
        meta = check_mtd(out / f"imagenet_{part}_50samples.csv")
        assert meta["rows"] == (40 if part.startswith("train") else 10)
    logs = run_cli("logs", view["run_id"])
    assert "[export] samples  50: 40 train + 10 val (seed 0)" in logs.out, logs.out
    assert view["outputs"]["export"]["dir"] == str(out)
