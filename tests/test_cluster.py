"""The cluster view: sinfo and squeue parsed (GPU clusters from captured text), the live cluster, the screen."""

from __future__ import annotations

import html
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from app.tui.app import make_app
from app.tui.cluster import ClusterScreen
from app.tui.runs import RunsScreen
from jobs.cluster import ClusterView, Partition, QueuedJob, cluster_view, gpu_count, parse_sinfo, parse_squeue
from tests.conftest import require_slurm, until

# What SINFO prints on a GPU cluster: a node in two partitions (a01), a typed gres with sockets, one
# with IDX lists holding commas, untyped GPUs, and nodes that are mixed, full, drained, down, powered off.
SINFO_TEXT = """\
gpu*|gpu-a01|idle|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)|up|
gpu*|gpu-a02|mixed|gpu:a100:4(S:0-1)|gpu:a100:2(IDX:0,2)|up|
gpu*|gpu-a03|allocated|gpu:a100:4(S:0-1)|gpu:a100:4(IDX:0-3)|up|
gpu*|gpu-a04|drained|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)|up|
gpu*|gpu-a05|down*|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)|up|
gpu*|gpu-b01|idle~|gpu:8,shard:16|gpu:0,shard:0|up|
gpu*|gpu-b02|mixed*|gpu:8|gpu:1|up|
gpu*|gpu-b03|draining|gpu:8|gpu:8(IDX:0-7)|up|
debug|gpu-a01|idle|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)|up|
cpu|cpu-001|idle|(null)|(null)|up|
cpu|cpu-002|mixed|(null)|(null)|up|
cpu|cpu-003|allocated|(null)|(null)|up|
old|old-01|idle|gpu:v100:2(S:0),gpu:k80:1|gpu:v100:1(IDX:1),gpu:k80:0(IDX:N/A)|inact|
"""

# What SQUEUE prints: a running multi-node job, a pending array, one of its tasks, a name with the separator.
SQUEUE_TEXT = """\
4242|RUNNING|gpu|1-02:03:04|2-00:00:00|2|gpu-a[02-03]|resnet50 imagenet|
4250_[4-7]|PENDING|gpu|0:00|12:00:00|1|(Resources)|sweep|
4250_3|RUNNING|gpu|12:01|12:00:00|1|gpu-a01|sweep|
4260|PENDING|cpu|0:00|30:00|1|(Dependency)|shard|train|
"""


def test_sinfo_counts_idle_and_total_nodes_and_gpus_per_partition() -> None:
    partitions = {p.name: p for p in parse_sinfo(SINFO_TEXT)}
    assert list(partitions) == ["gpu", "debug", "cpu", "old"]  # sinfo's order, each partition once
    # idle GPUs: a01 4, a02 2, b01 8 (powered off, boots for a job); a03 is full; a04, a05, b02, b03 take no jobs
    assert partitions["gpu"] == Partition("gpu", True, "up", nodes_idle=2, nodes_total=8, gpus_idle=14, gpus_total=44)
    assert partitions["debug"] == Partition("debug", False, "up", 1, 1, 4, 4)  # a01 counts here too
    assert partitions["cpu"] == Partition("cpu", False, "up", 1, 3, 0, 0)
    assert partitions["old"] == Partition("old", False, "inact", 1, 1, 2, 3)  # two types: 3 GPUs, 1 in use


def test_gpu_count_reads_every_gres_form() -> None:
    assert gpu_count("gpu:8") == 8
    assert gpu_count("gpu:a100:4") == 4
    assert gpu_count("gpu:a100:4(S:0-1)") == 4
    assert gpu_count("gpu:a100:2(IDX:0,2)") == 2  # the comma inside IDX is not a second gres
    assert gpu_count("gpu:a100:2(IDX:0-1),gpu:v100:1(IDX:3)") == 3
    assert gpu_count("shard:16,gpu:2,mps:400") == 2
    assert gpu_count("gpu:a100:0(IDX:N/A)") == 0
    assert gpu_count("(null)") == gpu_count("") == 0


def test_squeue_lines_become_jobs() -> None:
    jobs = parse_squeue(SQUEUE_TEXT)
    assert jobs[0] == QueuedJob(
        "4242", "resnet50 imagenet", "RUNNING", "gpu", "1-02:03:04", "2-00:00:00", 2, "gpu-a[02-03]"
    )
    assert [j.job_id for j in jobs] == ["4242", "4250_[4-7]", "4250_3", "4260"]
    assert jobs[1].reason_or_nodelist == "(Resources)" and jobs[1].state == "PENDING"
    assert jobs[3].name == "shard|train"  # the separator inside a name comes back whole
    assert parse_squeue("") == [] and parse_squeue("garbage\n") == []


def test_no_slurm_is_an_error_text_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    view = cluster_view()
    assert view == ClusterView([], [], "no SLURM on this machine (sinfo not found on PATH)")


# Real SLURM from here on: the cluster of tests/cluster/slurm-up.sh (this machine's node in partitions cpu and gpu,
# two more nodes in partition multi).


@pytest.fixture(scope="module")
def slurm() -> None:
    require_slurm()


def sbatch(*args: str) -> str:
    out = subprocess.run(
        ["sbatch", "--parsable", "-p", "cpu", "-c", "1", "-o", "/dev/null", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().split(";")[0]


@pytest.fixture
def job(slurm: None) -> Iterator[str]:
    """A real job that sleeps a minute; cancelled after the test."""
    job_id = sbatch("--wrap", "sleep 60", "-J", "cd-cluster-test")
    try:
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], check=False)


@pytest.mark.slurm
def test_the_live_cluster_and_a_submitted_job(job: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        view = cluster_view()
        mine = [j for j in view.jobs if j.job_id == job]
        if (mine and mine[0].state == "RUNNING") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert view.error == ""
    assert [(p.name, p.default, p.state, p.nodes_total, p.gpus_total) for p in view.partitions] == [
        ("cpu", True, "up", 1, 0),
        ("gpu", False, "up", 1, 0),
        ("multi", False, "up", 2, 0),
    ]
    assert mine, f"job {job} not in {view.jobs}"
    assert (mine[0].name, mine[0].partition, mine[0].nodes) == ("cd-cluster-test", "cpu", 1)
    assert mine[0].state in ("PENDING", "RUNNING")
    if mine[0].state == "RUNNING":  # the node runs a job: no longer idle, in both of its partitions
        assert mine[0].reason_or_nodelist == "vm"
        assert [p.nodes_idle for p in view.partitions[:2]] == [0, 0]


@pytest.mark.slurm
def test_errors_from_a_real_sinfo(slurm: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"  # a controller nobody listens for: sinfo retries, then gives up
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost\nSlurmctldPort=1\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    view = cluster_view(timeout_s=30)
    assert view == ClusterView([], [], "slurm_load_partitions: Unable to contact slurm controller (connect failure)")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))  # sinfo retries the file for a minute
    started = time.monotonic()
    assert cluster_view(timeout_s=1).error == "sinfo did not answer in 1 s"
    assert time.monotonic() - started < 5


def texts(row: list[Any]) -> list[str]:
    return [str(cell) for cell in row]


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text (from the screenshot's SVG)."""
    svg = re.sub(r"<[^>]+>", "", app.export_screenshot())
    return html.unescape(svg).replace("\xa0", " ")


@pytest.mark.slurm
async def test_the_cluster_screen_shows_partitions_and_my_jobs(job: str, tmp_path: Path) -> None:
    held = sbatch("--hold", "--wrap", "true", "-J", "[bold]not markup")
    try:
        app = make_app(tmp_path / "runs")
        async with app.run_test(size=(80, 24)) as pilot:  # the smallest terminal it is made for
            app.push_screen(ClusterScreen())
            await pilot.pause()
            screen = app.screen
            partitions = screen.query_one("#partitions", DataTable)
            jobs = screen.query_one("#my-jobs", DataTable)
            status = screen.query_one("#cluster-status", Static)
            await until(pilot, lambda: partitions.row_count == 3 and job in jobs.rows and held in jobs.rows)
            cpu, gpu = texts(partitions.get_row("cpu")), texts(partitions.get_row("gpu"))
            assert cpu[:2] == ["cpu*", "up"] and cpu[2] in ("0/1", "1/1") and cpu[3] == "-"  # no GPUs here
            assert gpu[:2] == ["gpu", "up"] and gpu[2] in ("0/1", "1/1")
            row = texts(jobs.get_row(job))
            assert row[:2] == [job, "cd-cluster-test"] and row[2] in ("PENDING", "RUNNING") and row[3] == "cpu"
            assert texts(jobs.get_row(held))[1:3] == ["[bold]not markup", "PENDING"]
            assert texts(jobs.get_row(held))[7] == "(JobHeldUser)"
            shown = screen_text(app)  # at 80 columns: the name (not read as markup), state and partition in view
            assert f" {held}  [bold]not markup  PENDING  cpu " in shown
            assert re.search(rf" {job}  cd-cluster-test +(PENDING|RUNNING)  cpu ", shown)
            assert "partitions" in str(status.content) and not status.has_class("error")

            before = str(status.content)
            await pilot.pause(1.1)  # the status line shows seconds: a new refresh shows a new time
            await pilot.press("r")
            await until(pilot, lambda: str(status.content) != before, timeout=5)  # long before the 10 s timer

            await pilot.press("escape")
            assert isinstance(app.screen, RunsScreen)
    finally:
        subprocess.run(["scancel", held], check=False)


async def test_the_cluster_screen_without_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ClusterScreen())
        await pilot.pause()
        status = app.screen.query_one("#cluster-status", Static)
        await until(pilot, lambda: "sinfo not found" in str(status.content))
        assert str(status.content) == "no SLURM on this machine (sinfo not found on PATH)"
        assert status.has_class("error")
        assert app.screen.query_one("#partitions", DataTable).row_count == 0
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
