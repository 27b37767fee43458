"""The cluster view: sinfo and squeue parsed (GPU clusters from captured text), the live cluster, the screen."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable, Static

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.cluster import ClusterScreen
from clusterdeck.app.tui.runs import RunsScreen
from clusterdeck.jobs.cluster import (
    ClusterView,
    Partition,
    QueuedJob,
    cluster_view,
    gpu_count,
    parse_sinfo,
    parse_squeue,
)
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


# Real SLURM from here on: the cluster of tests/cluster/slurm-up.sh. What it holds (its partitions, their nodes)
# is read from scontrol, never assumed; a job of ours is waited on until squeue says it runs.


@pytest.fixture(scope="module")
def slurm() -> None:
    require_slurm()


def slurm_out(*args: str, timeout: float = 60) -> str:
    """A SLURM command's output; retried while the controller does not answer (it may be restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        if proc.returncode == 0:
            return proc.stdout
        assert time.monotonic() < deadline, f"{' '.join(args)}: {proc.stderr.strip()}"
        time.sleep(1)


def sbatch(*args: str, partition: str = "cpu") -> str:
    out = slurm_out("sbatch", "--parsable", "-p", partition, "-c", "1", "-o", "/dev/null", *args)
    return out.strip().split(";")[0]


def scontrol(*what: str) -> list[dict[str, str]]:
    """``scontrol -o show ...``: one record a line, as KEY=VALUE fields."""
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in slurm_out("scontrol", "-o", "show", *what).splitlines()]


def hostnames(nodelist: str) -> list[str]:
    return slurm_out("scontrol", "show", "hostnames", nodelist).split() if nodelist and nodelist != "(null)" else []


@dataclass(frozen=True)
class ConfiguredPartition:
    name: str
    default: bool
    state: str
    nodes: tuple[str, ...]
    gpus: int


def configured_partitions() -> list[ConfiguredPartition]:
    """The partitions as slurmctld holds them (scontrol, not sinfo), in its order, with their nodes and GPUs."""
    gres = {node["NodeName"]: node.get("Gres", "") for node in scontrol("node")}
    found = []
    for p in scontrol("partition"):
        nodes = tuple(hostnames(p["Nodes"]))
        state = {"INACTIVE": "inact"}.get(p["State"], p["State"].lower())
        found.append(ConfiguredPartition(p["PartitionName"], p["Default"] == "YES", state, nodes,
                                         sum(gpu_count(gres.get(n, "")) for n in nodes)))  # fmt: skip
    return found


def partition_names() -> list[str]:
    return [p["PartitionName"] for p in scontrol("partition")]


def wait_running(job_id: str, timeout: float = 180) -> tuple[str, str]:
    """Waits until squeue says the job runs (other tests' jobs may hold the CPUs first); returns its node and
    the partition it runs in."""
    deadline = time.monotonic() + timeout
    while (state := slurm_out("squeue", "-h", "-j", job_id, "-o", "%T").strip()) != "RUNNING":
        assert state in ("PENDING", "CONFIGURING", ""), f"job {job_id} is {state}, not running"
        assert time.monotonic() < deadline, f"job {job_id} still {state or 'not listed'} after {timeout:.0f} s"
        time.sleep(0.5)
    (record,) = scontrol("job", job_id)
    return record["NodeList"], record["Partition"]


def settled_view() -> tuple[ClusterView, list[ConfiguredPartition]]:
    """cluster_view() with the configuration it saw: read again if slurm.conf changed (or the controller was down)
    while it read."""
    deadline = time.monotonic() + 60
    while True:
        before = configured_partitions()
        view = cluster_view()
        if not view.error and configured_partitions() == before:
            return view, before
        assert time.monotonic() < deadline, f"the cluster never settled: {view.error}"
        time.sleep(1)


@pytest.fixture
def job(slurm: None) -> Iterator[str]:
    """A real job that sleeps, in whichever partition has a CPU first (the cluster may be shared); cancelled after
    the test."""
    job_id = sbatch("--wrap", "sleep 600", "-J", "cd-cluster-test", partition=",".join(partition_names()))
    try:
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], check=False)


@pytest.mark.slurm
def test_the_live_cluster_and_a_running_job(job: str) -> None:
    node, partition = wait_running(job)
    view, configured = settled_view()
    assert [(p.name, p.default, p.state, p.nodes_total, p.gpus_total) for p in view.partitions] == [
        (p.name, p.default, p.state, len(p.nodes), p.gpus) for p in configured
    ]
    mine = [j for j in view.jobs if j.job_id == job]
    assert mine, f"job {job} not in {view.jobs}"
    assert (mine[0].name, mine[0].state, mine[0].partition, mine[0].nodes) == ("cd-cluster-test", "RUNNING",
                                                                                partition, 1)  # fmt: skip
    assert mine[0].reason_or_nodelist == node
    # the node runs our job: it is not idle, in each partition that holds it
    holding = [p.name for p in configured if node in p.nodes]
    assert partition in holding
    assert all(p.nodes_idle < p.nodes_total for p in view.partitions if p.name in holding), view.partitions


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


def measured(table: DataTable[Any], columns: int) -> bool:
    """The table has measured the rows it holds (it does so when idle): its first columns fit their cells."""
    return all(
        column.content_width >= max((cell_len(str(table.get_row(key)[i])) for key in table.rows), default=0)
        for i, column in enumerate(table.ordered_columns[:columns])
    )


@pytest.mark.slurm
async def test_the_cluster_screen_shows_partitions_and_my_jobs(job: str, tmp_path: Path) -> None:
    held = sbatch("--hold", "--wrap", "true", "-J", "[bold]not markup")
    try:
        node, partition = wait_running(job)
        configured = configured_partitions()
        app = make_app(tmp_path / "runs")
        async with app.run_test(size=(80, 24)) as pilot:  # the smallest terminal it is made for
            cluster = ClusterScreen()
            cluster.REFRESH_S = 3600  # only "r" refreshes it here
            app.push_screen(cluster)
            await pilot.pause()
            screen = app.screen
            partitions = screen.query_one("#partitions", DataTable)
            jobs = screen.query_one("#my-jobs", DataTable)
            status = screen.query_one("#cluster-status", Static)
            await until(pilot, lambda: partitions.row_count == len(configured) and {job, held} <= jobs.rows.keys())

            for p in configured:
                name, state, nodes, gpus = texts(partitions.get_row(p.name))
                assert (name, state) == (p.name + "*" * p.default, p.state)
                idle, total = map(int, nodes.split("/"))
                assert total == len(p.nodes) and (idle < total if node in p.nodes else idle <= total)
                assert gpus == "-" if p.gpus == 0 else re.fullmatch(rf"\d+/{p.gpus}", gpus)
            row = jobs.get_row(job)
            assert texts(row)[:4] == [job, "cd-cluster-test", "RUNNING", partition]
            assert texts(row)[6:] == ["1", node]
            row = jobs.get_row(held)
            assert texts(row)[:4] == [held, "[bold]not markup", "PENDING", "cpu"]
            assert texts(row)[7] == "(JobHeldUser)"
            assert isinstance(row[1], Text) and not row[1].spans  # the name as it is, not read as markup
            # at 80 columns: id, name, state and partition in view, whatever else the queue holds
            await until(pilot, lambda: measured(jobs, 4))
            shown = sum(column.get_render_width(jobs) for column in jobs.ordered_columns[:4])
            assert shown <= jobs.scrollable_content_region.width, [c.content_width for c in jobs.ordered_columns]
            assert "partitions" in str(status.content) and not status.has_class("error")

            await until(pilot, lambda: not cluster.loading)  # the reads of its mount and its resume are in
            first = cluster.view
            await pilot.press("r")
            await until(pilot, lambda: cluster.view is not first)  # a fresh read: its timer is an hour away
            assert not status.has_class("error")

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
