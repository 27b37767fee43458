"""The [script] step on the real SLURM cluster: a user's command as several tasks, and requeued at its request."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import end_releasing_requeues, require_slurm, run_cli, wait_for
from tests.test_script_step import SCRIPTS, script_spec

pytestmark = pytest.mark.slurm
RESOURCES = {"partition": "gpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "time_min": 10}


def slurm_spec(tmp_path: Path, name: str, command: list[str], **script: object) -> Path:
    resources = {**RESOURCES, **script.pop("resources", {})}  # type: ignore[dict-item]
    path = script_spec(tmp_path, name, command, workdir=str(tmp_path), resources=resources, **script)
    path.write_text(path.read_text().replace("[script]", '[cluster]\nexecutor = "slurm"\n[script]', 1))
    return path


def test_two_tasks_each_get_their_rank_and_one_master(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    require_slurm()
    spec = slurm_spec(
        tmp_path, "probe2", [sys.executable, str(SCRIPTS / "probe.py")], shards=str(sample_shards),
        resources={"tasks_per_node": 2}, stage={"mode": "before", "to": str(tmp_path / "ssd")},
    )  # fmt: skip
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=180)
    assert result.code == 0, result.err
    run = Path(json.loads(result.out)["path"])
    envs = [json.loads((run / "checkpoints" / f"probe-{r}.json").read_text())["env"] for r in (0, 1)]
    assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["LOCAL_WORLD_SIZE"]) for e in envs] == [
        ("0", "0", "2", "2"),
        ("1", "1", "2", "2"),
    ]
    assert envs[0]["MASTER_ADDR"] == envs[1]["MASTER_ADDR"] and envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"]
    assert envs[0]["CLUSTERDECK_SHARDS"] == envs[1]["CLUSTERDECK_SHARDS"] != str(sample_shards)


def test_a_failing_task_fails_the_run_with_its_exit_and_last_stderr_line(tmp_path: Path, home: Path) -> None:
    require_slurm()
    spec = slurm_spec(tmp_path, "exit3", [sys.executable, str(SCRIPTS / "probe.py")], env={"PROBE_EXIT": "3"})
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=180)
    assert result.code == 1, result.err
    shown = run_cli("show", json.loads(result.out)["run_id"]).out
    assert "probe.py` exited with 3; its stderr ended: probe: a line on stderr" in shown, shown


def test_a_script_that_exits_requeue_at_the_signal_is_requeued_and_finishes_its_epochs(
    tmp_path: Path, home: Path
) -> None:
    """SIGUSR2 (the time-limit warning) sent mid-run: the command saves its epoch and exits 75, the step requeues
    the job (same job id, same run), and the second run trains exactly the epochs that were left."""
    require_slurm()
    spec = slurm_spec(tmp_path, "requeue", [sys.executable, str(SCRIPTS / "resumable.py"), "3"])
    result = run_cli("submit", str(spec), "--json")
    assert result.code == 0, result.err
    run_id, run = json.loads(result.out)["run_id"], Path(json.loads(result.out)["path"])
    job_id = json.loads(result.out)["steps"][0]["job_ids"][0]
    deadline = time.monotonic() + 240
    try:
        wait_for("the first run to wait for its signal", (run / "checkpoints" / "waiting").exists, timeout=120)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, capture_output=True)
        view = end_releasing_requeues(run_id, job_id, deadline)
    finally:
        run_cli("cancel", run_id)
    part = view["steps"][0]["parts"][0]
    assert view["state"] == "COMPLETED", part
    assert part["job_id"] == job_id and [h["state"] for h in part["history"]] == ["REQUEUED"], part
    assert (run / "checkpoints" / "epochs.txt").read_text().split() == ["1", "2", "3"]  # none twice, none missing
    log = (run / "submitit" / f"{job_id}_0_log.out").read_text()
    assert "resumable: checkpoint at epoch 1; requeue" in log and "resumable: done" in log
    assert "[clusterdeck] script main: the command exited with clusterdeck.REQUEUE (75); requeueing" in log


def test_a_failing_stager_rank_ends_the_job_at_once_not_after_waiting_for_its_peers(
    sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    """Rank 0 stages for its node and fails; rank 1 waits forever. Rank 0 must not wait for rank 1 to finish
    reading: its exit is what makes srun end rank 1, and the run says why."""
    require_slurm()
    spec = slurm_spec(
        tmp_path, "rank0fails", [sys.executable, str(SCRIPTS / "rank_fails.py")], shards=str(sample_shards),
        resources={"tasks_per_node": 2}, stage={"mode": "before", "to": str(tmp_path / "ssd")},
    )  # fmt: skip
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=240)
    assert result.code == 1, result.err
    errors = [p["error"] for p in json.loads(result.out)["steps"][0]["parts"]]
    assert any("exited with 3; its stderr ended: rank 0: giving up" in e for e in errors), errors


def test_a_command_that_always_asks_for_a_requeue_fails_after_max_requeues(tmp_path: Path, home: Path) -> None:
    require_slurm()
    spec = slurm_spec(tmp_path, "loop", [sys.executable, str(SCRIPTS / "always_requeue.py")], max_requeues=1)
    result = run_cli("submit", str(spec), "--json")
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["run_id"]
    job_id = json.loads(result.out)["steps"][0]["job_ids"][0]
    deadline = time.monotonic() + 240
    try:
        view = end_releasing_requeues(run_id, job_id, deadline)
    finally:
        run_cli("cancel", run_id)
    part = view["steps"][0]["parts"][0]
    assert view["state"] == "FAILED" and [h["state"] for h in part["history"]] == ["REQUEUED"], part
    assert "after 1 requeue(s); script.max_requeues is 1" in part["error"], part
