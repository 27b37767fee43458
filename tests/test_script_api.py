"""A user's own script through ``import clusterdeck``, run as a [script] step: the example DDP script
(templates/examples/train.py) on the local executor and as two gloo ranks on SLURM, a Lightning script, and a
loader that starts on the first staged shard while the rest are still being copied."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, records, require_slurm, run_cli
from tests.test_script_step import SCRIPTS, script_spec

EXAMPLES = REPO / "templates" / "examples"
EXAMPLE = [sys.executable, str(EXAMPLES / "train.py"), "--epochs", "8", "--image-size", "32", "--width", "16",
           "--workers", "1", "--batch-size", "16", "--lr", "0.005"]  # fmt: skip


def top1s(run: Path) -> list[float]:
    return [r["top1"] for r in records(run / "metrics.jsonl", "epoch")]


def submitted(result_out: str) -> tuple[str, Path]:
    view = json.loads(result_out)
    assert [s["state"] for s in view["steps"]] == ["COMPLETED"], view
    return view["run_id"], Path(view["path"])


def test_the_example_script_trains_above_twice_chance_and_its_metrics_read_like_the_trainers(
    learnable_shards: Path, tmp_path: Path, home: Path
) -> None:
    runs = []
    for lr in ("0.005", "0.002"):
        command = [*EXAMPLE[:-1], lr]
        spec = script_spec(tmp_path, f"example-{lr}", command, workdir=str(EXAMPLES), shards=str(learnable_shards))
        result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
        assert result.code == 0, result.err
        runs.append(submitted(result.out))
    (first_id, first), (second_id, _) = runs
    assert len(top1s(first)) == 8 and top1s(first)[-1] > 2 / 6, top1s(first)  # six classes: chance is 1/6
    metrics = [json.loads(line) for line in run_cli("metrics", first_id, "--json").out.splitlines()]
    steps = [m["step"] for m in metrics if m["kind"] == "train"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 8 * (300 // 16)  # every step once, rank 0's
    assert {m["kind"] for m in metrics} >= {"train", "epoch", "system"}  # the step's telemetry of the command
    read = [m["data_samples_s"] for m in metrics if m["kind"] == "system"]
    assert max(read) > 0, read  # the command's loader counted into the step's pipeline counters
    watched = run_cli("watch", first_id).out  # not a terminal: one line per record
    assert re.search(r"^epoch 8: top-1 \d+\.\d\d%  val loss \d", watched, re.M), watched[-1000:]
    assert re.search(r"^train step 1 \(epoch 0\.\d\d\)  loss \d\.\d{4}  lr 0\.005$", watched, re.M), watched[:1000]
    table = run_cli("diff", first_id, second_id).out
    assert re.search(r"^EPOCH +A loss +A top-1 +A images_per_s +B loss", table, re.M), table  # no empty top-5
    diff = json.loads(run_cli("diff", first_id, second_id, "--json").out)
    assert "lr" in json.dumps(diff) and "top1" in json.dumps(diff), diff
    assert (first / "checkpoints" / "last.pt").exists() and not (EXAMPLES / "checkpoints").exists()


def test_the_example_script_trains_as_two_gloo_ranks_on_slurm_with_the_same_weights(
    learnable_shards: Path, tmp_path: Path, home: Path
) -> None:
    require_slurm()
    resources = {"partition": "gpu", "tasks_per_node": 2, "cpus_per_task": 1, "mem_gb": 2, "time_min": 10}
    spec = script_spec(
        tmp_path, "ddp", EXAMPLE, workdir=str(EXAMPLES), shards=str(learnable_shards), resources=resources,
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    spec.write_text(spec.read_text().replace("[script]", '[cluster]\nexecutor = "slurm"\n[script]', 1))
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert result.code == 0, result.err
    run_id, run = submitted(result.out)
    assert [r["epoch"] for r in records(run / "metrics.jsonl", "epoch")] == list(range(1, 9))  # rank 0's only
    assert top1s(run)[-1] > 2 / 6, top1s(run)
    log = run_cli("logs", run_id).out
    digests = dict(re.findall(r"rank (\d): done; weights (\w+)", log))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], log[-2000:]


def test_a_lightning_script_trains_on_the_steps_shards(learnable_shards: Path, tmp_path: Path, home: Path) -> None:
    pytest.importorskip("lightning")
    spec = script_spec(
        tmp_path, "lightning", [sys.executable, str(SCRIPTS / "lightning_train.py"), "8"], workdir=str(tmp_path),
        shards=str(learnable_shards),
    )  # fmt: skip
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert result.code == 0, result.err
    _, run = submitted(result.out)
    assert len(top1s(run)) == 8 and top1s(run)[-1] > 2 / 6, top1s(run)


def test_staging_ahead_the_first_batch_comes_before_the_last_shard_lands(
    learnable_shards: Path, tmp_path: Path, home: Path
) -> None:
    """The copy is held to 0.5 MB/s (the set is a few MB), so the stager is still copying when the loader,
    waiting on each shard as the trainer does, hands over its first batch."""
    stage = {"mode": "ahead", "to": str(tmp_path / "ssd"), "max_mb_s": 0.5, "streams": 1}
    spec = script_spec(
        tmp_path, "ahead", [sys.executable, str(SCRIPTS / "first_batch.py")], workdir=str(tmp_path),
        shards=str(learnable_shards), stage=stage,
    )  # fmt: skip
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert result.code == 0, result.err
    _, run = submitted(result.out)
    note = json.loads((run / "checkpoints" / "first_batch.json").read_text())
    assert note["staging"] and 1 <= note["landed"] < note["shards"], note
    later = [r["files_done"] for r in records(run / "metrics.jsonl", "stage") if r["time"] > note["first_batch_at"]]
    assert later and max(later) > note["landed"], (note, later)  # the copy went on while the script trained


def test_the_example_script_trains_on_two_nodes_each_staging_only_its_share(
    learnable_shards: Path, tmp_path: Path, home: Path
) -> None:
    """Partition ``multi``: one rank on each of two nodes (own hostnames, own /local-ssd), stage scope 'node': each
    node copies the shards its rank reads (CLUSTERDECK_SHARD_NODES tells the loader the same split)."""
    require_slurm()
    resources = {"partition": "multi", "nodes": 2, "tasks_per_node": 1, "cpus_per_task": 1, "mem_gb": 1,
                 "time_min": 10}  # fmt: skip
    stage = {"mode": "before", "scope": "node", "to": "/local-ssd"}
    spec = script_spec(
        tmp_path, "two-nodes", EXAMPLE, workdir=str(EXAMPLES), shards=str(learnable_shards), resources=resources,
        stage=stage, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    spec.write_text(spec.read_text().replace("[script]", '[cluster]\nexecutor = "slurm"\n[script]', 1))
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert result.code == 0, result.err
    run_id, run = submitted(result.out)
    assert top1s(run)[-1] > 2 / 6, top1s(run)
    log = run_cli("logs", run_id).out
    digests = dict(re.findall(r"rank (\d): done; weights (\w+)", log))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], log[-2000:]
    staged = [int(n) for n in re.findall(r"stage \(before\): (\d+) shards", log)]
    total = len(json.loads((learnable_shards / "index.json").read_text())["splits"]["train"]["shards"])
    assert len(staged) == 2 and all(n < total for n in staged), (staged, total)  # each node a share, not all
