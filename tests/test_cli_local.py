"""The headless CLI against the embedded local executor: real submitit jobs, real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from clusterdeck.jobs import __version__
from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import copy_with_stuck_file, run_cli, shard_spec


def spec_file(tmp_path: Path, data: SampleData, out: Path, **kw: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(shard_spec(data, out, **kw))
    return path


def test_submit_wait_show_logs_ls(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    out = tmp_path / "shards"
    result = run_cli("submit", str(spec_file(tmp_path, sample_data, out)), "--wait", "--json", "--set", "shard.seed=4")
    assert result.code == 0, result.err
    view = json.loads(result.out)
    assert view["state"] == "COMPLETED"
    assert view["outputs"]["shard"] == {"dir": str(out), "index": str(out / "index.json")}
    index = json.loads((out / "index.json").read_text())
    assert index["settings"]["seed"] == 4

    shown = json.loads(run_cli("show", view["run_id"][:-2], "--json").out)
    step = shown["steps"][0]
    assert (shown["run_id"], shown["state"], step["name"], step["state"]) == (
        view["run_id"],
        "COMPLETED",
        "shard",
        "COMPLETED",
    )
    assert step["job_ids"] and step["parts"][0]["node"] == os.uname().nodename
    assert step["parts"][0]["progress"]["shards_done"] == len(index["splits"]["train"]["shards"]) + len(
        index["splits"]["val"]["shards"]
    )

    logs = run_cli("logs", view["run_id"])
    assert logs.code == 0
    assert "train-000000.tar: " in logs.out and "[clusterdeck] shard main completed" in logs.out
    listing = run_cli("ls")
    assert view["run_id"] in listing.out and "shard:COMPLETED" in listing.out
    assert json.loads(run_cli("ls", "--json").out)["runs"][0]["state"] == "COMPLETED"
    again = run_cli("resume", view["run_id"])
    assert again.code == 0 and "nothing to resume" in again.out


def test_a_failing_run_exits_1_and_says_why(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(sample_data.root, data)
    for k in range(5):
        (data / "train" / sorted(sample_data.wnids)[0] / f"junk{k}.JPEG").write_text("junk")
    result = run_cli("submit", str(spec_file(tmp_path, SampleData(data, sample_data.wnids), tmp_path / "o")), "--wait")
    assert result.code == 1
    assert "train: 5 of 77 inputs skipped" in result.err
    assert "Traceback" not in result.err
    run_id = result.out.split()[2]
    assert run_cli("show", run_id).code == 1
    assert "FAILED" in run_cli("ls").out


def _wait_for(predicate, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_cancel_a_running_job_then_resume_it(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    data, stuck = copy_with_stuck_file(sample_data, tmp_path, 2, 5)
    wnid = stuck.parent.name
    out = tmp_path / "shards"
    submitted = run_cli("submit", str(spec_file(tmp_path, data, out)), "--json")
    assert submitted.code == 0, submitted.err
    run_id = json.loads(submitted.out)["run_id"]

    def almost_done() -> dict | None:
        view = json.loads(run_cli("show", run_id, "--json").out)
        progress = view["steps"][0]["parts"][0]["progress"]
        return view if progress and progress["shards_done"] == progress["shards_total"] - 1 else None

    view = _wait_for(almost_done)
    assert view["state"] == "RUNNING"
    pid = int(view["steps"][0]["job_ids"][0])
    workers = psutil.Process(pid).children(recursive=True)
    assert workers

    assert run_cli("cancel", run_id).code == 0
    ended = _wait_for(lambda: (v := json.loads(run_cli("show", run_id, "--json").out))["state"] != "RUNNING" and v)
    assert ended["state"] == "CANCELLED"
    assert ended["steps"][0]["state"] == "CANCELLED"
    _wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers), 15)
    assert not (out / "index.json").exists()
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert len(written) == ended["steps"][0]["parts"][0]["progress"]["shards_total"] - 1

    stuck.unlink()
    shutil.copy(sample_data.train / wnid / f"{wnid}_5.JPEG", stuck)
    resumed = run_cli("resume", run_id)
    assert resumed.code == 0, resumed.err
    final = _wait_for(
        lambda: (
            (v := json.loads(run_cli("show", run_id, "--json").out))["state"] != "RUNNING"
            and v["state"] != "PENDING"
            and v
        )
    )
    assert final["state"] == "COMPLETED"
    assert final["steps"][0]["attempt"] == 2
    logs = run_cli("logs", run_id).out
    assert logs.count("(verified, kept)") == len(written)
    assert all((out / name).stat().st_mtime_ns == t for name, t in written.items())
    assert (out / "index.json").exists()


def test_logs_follow_prints_every_line_once_until_the_run_ends(sample_data: SampleData, tmp_path: Path, home: Path):
    submitted = run_cli("submit", str(spec_file(tmp_path, sample_data, tmp_path / "shards")), "--json")
    run_id = json.loads(submitted.out)["run_id"]
    followed = run_cli("logs", run_id, "--follow")
    assert followed.code == 0
    lines = followed.out.splitlines()
    assert lines.count("[clusterdeck] shard main completed") == 1
    shard_lines = [line for line in lines if line.endswith("(written)")]
    assert len(shard_lines) == len(set(shard_lines)) == len(list((tmp_path / "shards").glob("*.tar")))
    assert run_cli("logs", run_id).out == followed.out


def test_version_and_both_entry_points() -> None:
    assert run_cli("--version").out.strip() == f"clusterdeck {__version__}"
    cdeck = Path(sys.executable).parent / "cdeck"
    out = subprocess.run([str(cdeck), "--version"], capture_output=True, text=True).stdout
    assert out.strip() == f"clusterdeck {__version__}"
