"""The [script] step on the local executor: a user's command gets its task's environment and the staged shards,
and how it ends (exit 0, another code, a program that is not there) is what the run records."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from clusterdeck.jobs.train.shardset import read_shardset
from tests.conftest import REPO, run_cli, show

SCRIPTS = REPO / "tests" / "scripts"


def script_spec(tmp_path: Path, name: str, command: list[str], **script: Any) -> Path:
    lines = [f'name = "{name}"', "[script]", f"command = {json.dumps(command)}"]
    tables = {k: script.pop(k) for k in ("env", "stage", "resources") if k in script}
    lines += [f"{k} = {json.dumps(v)}" for k, v in script.items()]
    if "env" in tables:
        lines.append("env = { " + ", ".join(f'{k} = "{v}"' for k, v in tables["env"].items()) + " }")
    resources = {"gpus_per_node": 0, **tables.get("resources", {})}
    for section, values in (("stage", tables.get("stage", {})), ("resources", resources)):
        lines.append(f"[script.{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_script_runs_in_its_workdir_with_its_task_and_the_staged_shards(
    sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    ssd = tmp_path / "ssd"
    spec = script_spec(
        tmp_path, "probe", [sys.executable, str(SCRIPTS / "probe.py"), "--epochs", "3"], workdir=str(tmp_path),
        shards=str(sample_shards), env={"WANDB_MODE": "offline"}, stage={"mode": "before", "to": str(ssd)},
    )  # fmt: skip
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=120)
    assert result.code == 0, result.err
    view = json.loads(result.out)
    run = Path(view["path"])
    report = json.loads((run / "checkpoints" / "probe-0.json").read_text())
    env = report["env"]
    assert report["cwd"] == str(tmp_path) and report["argv"] == ["--epochs", "3"]
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == ("0", "1", "0", "1")
    assert env["MASTER_ADDR"] == "127.0.0.1" and 0 < int(env["MASTER_PORT"]) < 65536
    assert env["CLUSTERDECK_RUN_DIR"] == str(run) and env["CLUSTERDECK_ATTEMPT"] == "1"
    assert env["CLUSTERDECK_CHECKPOINT_DIR"] == str(run / "checkpoints")
    assert env["CLUSTERDECK_METRICS"] == str(run / "metrics.jsonl") and env["WANDB_MODE"] == "offline"
    # the shards it read were the node-local copies, every one of them whole, with the set's own index
    staged = Path(env["CLUSTERDECK_SHARDS"])
    assert staged.is_relative_to(ssd) and staged.parent == Path(env["CLUSTERDECK_STAGING"])
    index = read_shardset(sample_shards, "t")
    assert report["shard_sizes"] == {s.path.name: s.bytes for split in index.splits.values() for s in split}
    assert not staged.exists()  # the job's copies are gone with it (stage.keep is false)
    log = run_cli("logs", view["run_id"]).out
    assert "probe: rank 0 of 1 saw" in log


def test_a_script_without_shards_gets_none(tmp_path: Path, home: Path) -> None:
    spec = script_spec(tmp_path, "bare", [sys.executable, str(SCRIPTS / "probe.py")], workdir=str(tmp_path))
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=120)
    assert result.code == 0, result.err
    env = json.loads((Path(json.loads(result.out)["path"]) / "checkpoints" / "probe-0.json").read_text())["env"]
    assert env["CLUSTERDECK_SHARDS"] == "" and env["CLUSTERDECK_STAGING"] == ""


def test_a_failing_script_fails_the_run_with_its_exit_and_last_stderr_line(tmp_path: Path, home: Path) -> None:
    spec = script_spec(
        tmp_path, "exit3", [sys.executable, str(SCRIPTS / "probe.py")], workdir=str(tmp_path), env={"PROBE_EXIT": "3"}
    )
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=120)
    assert result.code == 1, result.err
    part = json.loads(result.out)["steps"][0]["parts"][0]
    assert part["state"] == "FAILED"
    assert "probe.py` exited with 3; its stderr ended: probe: a line on stderr" in part["error"], part
    assert (
        "exited with 3; its stderr ended: probe: a line on stderr"
        in run_cli("show", json.loads(result.out)["run_id"]).out
    )


def test_a_program_that_is_not_there_is_named(tmp_path: Path, home: Path) -> None:
    spec = script_spec(tmp_path, "nothere", ["no-such-program-here"], workdir=str(tmp_path))
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=120)
    assert result.code == 1, result.err
    error = show(json.loads(result.out)["run_id"])["steps"][0]["parts"][0]["error"]
    assert error.startswith("script.command: cannot start 'no-such-program-here' in ") and "Traceback" not in error


def test_the_sbatch_preview_of_a_script_step_asks_for_its_gpus_signal_and_one_task_per_gpu(tmp_path: Path) -> None:
    from clusterdeck.jobs.runspec import load_spec
    from clusterdeck.jobs.submit import preview_run

    spec = script_spec(
        tmp_path, "gpus", ["python", "probe.py"], workdir=str(SCRIPTS), resources={"gpus_per_node": 4, "nodes": 2}
    )
    spec.write_text(spec.read_text().replace("[script]", '[cluster]\nexecutor = "slurm"\n[script]', 1))
    (script,) = preview_run(load_spec(spec), tmp_path / "runs").values()
    for line in ("#SBATCH --gpus-per-node=4", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --signal=USR2@120", "--kill-on-bad-exit=1"):  # fmt: skip
        assert line in script, script


def test_a_process_left_holding_stderr_does_not_keep_the_step_waiting(tmp_path: Path) -> None:
    """A background helper the command started (a wandb service, say) keeps its stderr open after it exits: the
    step takes what came within the grace and goes on, rather than waiting for that helper to end."""
    from clusterdeck.jobs.script.process import STDERR_GRACE_S, run_command

    started = time.monotonic()
    ended = run_command(["sh", "-c", "echo bye >&2; (sleep 120 &); exit 3"], cwd=tmp_path, env=dict(os.environ))
    assert ended.returncode == 3 and ended.stderr_tail == ["bye"]
    assert time.monotonic() - started < STDERR_GRACE_S + 60  # not the 120 s of the helper


def test_progress_bars_pass_through_and_a_kept_line_is_cut(tmp_path: Path) -> None:
    from clusterdeck.jobs.script.process import LINE_CHARS, run_command

    bar = "printf '10%%\\r50%%\\r100%%\\n' >&2; printf 'x%.0s' $(seq 2000) >&2; printf '\\nlast\\n' >&2; exit 1"
    ended = run_command(["sh", "-c", bar], cwd=tmp_path, env=dict(os.environ))
    assert ended.stderr_tail[:3] == ["10%", "50%", "100%"], ended.stderr_tail
    assert ended.stderr_tail[3] == "x" * LINE_CHARS and ended.stderr_tail[-1] == "last"
    assert ended.describe(["python", "train.py"]) == "`python train.py` exited with 1; its stderr ended: last"
