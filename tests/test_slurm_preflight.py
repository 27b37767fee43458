"""Real SLURM: submit's checks of a run's resources against the cluster, and a waiting job's reason and expected
start in ``show`` and ``ls`` (the cluster of tests/cluster/slurm-up.sh: partition ``short`` has MaxTime 30)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from clusterdeck.app.formats import when
from clusterdeck.jobs.dispatch.queue import REASONS, parse_starts, reason_text
from clusterdeck.jobs.dispatch.slurm_checks import check_submission, time_limit_min
from clusterdeck.jobs.runspec import load_spec
from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import missing, require_slurm, run_cli, shard_spec, show, train_section, wait_for
from tests.sshd import HOST, LOGIN_SETUP, Laptop, Sshd

HELD = "--begin=now+3600"
"""Keeps a job pending, with a start SLURM can tell: its begin time, an hour from now."""


@pytest.fixture
def cluster() -> None:
    require_slurm()


def shard_file(tmp_path: Path, data: SampleData, name: str = "checked", **resources: object) -> Path:
    values: dict[str, object] = {"partition": "cpu", "cpus_per_task": 1, "mem_gb": 1, "time_min": 10, **resources}
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    path = tmp_path / f"{name}.toml"
    text = shard_spec(data, tmp_path / f"{name}-out", name=name).replace('executor = "local"', 'executor = "slurm"')
    path.write_text(text + "[shard.resources]\n" + lines)
    return path


def train_file(tmp_path: Path, shards: Path, **resources: object) -> Path:
    values = {"partition": "gpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "time_min": 10, **resources}
    path = tmp_path / "train.toml"
    path.write_text(
        'name = "checked"\n[cluster]\nexecutor = "slurm"\n'
        + train_section(shards, resources=values, batch_size=4, workers=0)
    )
    return path


def path_without_scontrol(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH directory with every command of scontrol's directory but scontrol (links to the real ones), and
    scontrol's own directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = Path(shutil.which("scontrol") or "/usr/bin/scontrol").parent
    for entry in real.iterdir():
        if entry.name != "scontrol":
            (bin_dir / entry.name).symlink_to(entry)
    return bin_dir, real


def refused(spec: Path, home: Path, key: str, env: dict[str, str] | None = None) -> str:
    """Submits ``spec``: exit 2 with a line naming ``key``, no traceback, nothing under the runs root."""
    result = run_cli("submit", str(spec), env=env)
    assert result.code == 2, (result.out, result.err)
    assert f"clusterdeck: error: {key}: " in result.err, result.err
    assert "Traceback" not in result.err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
    return result.err


@pytest.mark.slurm
def test_a_time_over_the_partitions_maxtime_is_refused(
    cluster: None, sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    if time_limit_min(_sinfo("short", "%l")) != 30:
        missing("partition short (MaxTime 30) is not there; run tests/cluster/slurm-up.sh")
    err = refused(shard_file(tmp_path, sample_data, partition="short", time_min=31), home, "shard.resources.time_min")
    assert "31 minutes asked; partition 'short' allows at most 30 (its MaxTime)" in err
    check_submission(load_spec(shard_file(tmp_path, sample_data, partition="short", time_min=30)), ["shard"])


@pytest.mark.slurm
def test_a_list_of_partitions_passes_when_one_of_them_fits(
    cluster: None, sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    """sbatch takes ``short,cpu`` and starts the job where it can: 31 minutes fit cpu, not short."""
    check_submission(load_spec(shard_file(tmp_path, sample_data, partition="short,cpu", time_min=31)), ["shard"])
    err = refused(
        shard_file(tmp_path, sample_data, partition="short,nosuch", time_min=31), home, "shard.resources.time_min"
    )
    assert "partition 'short' allows at most 30" in err


@pytest.mark.slurm
@pytest.mark.parametrize(
    ("resources", "key"),
    [
        ({"cpus_per_task": 4096}, "cpus_per_task"),
        ({"mem_gb": 100000}, "mem_gb"),
        ({"partition": "nosuch"}, "partition"),
    ],
)
def test_more_than_any_node_has_is_refused(
    cluster: None, sample_data: SampleData, tmp_path: Path, home: Path, resources: dict[str, object], key: str
) -> None:
    err = refused(shard_file(tmp_path, sample_data, **resources), home, f"shard.resources.{key}")
    assert "partition 'cpu'" in err or "no partition 'nosuch' on this cluster (it has: cpu, gpu, multi, short)" in err


@pytest.mark.slurm
def test_gpus_and_nodes_that_no_partition_has_are_refused(
    cluster: None, sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    gpus = refused(train_file(tmp_path, sample_shards, gpus_per_node=1), home, "train.resources.gpus_per_node")
    assert "1 GPUs asked per node; partition 'gpu' has no GPUs" in gpus
    nodes = len(_sinfo("multi", "%n").split())
    spec = train_file(tmp_path, sample_shards, partition="multi", nodes=nodes + 1, tasks_per_node=1)
    assert f"{nodes + 1} nodes asked; partition 'multi' has {nodes} with" in refused(
        spec, home, "train.resources.nodes"
    )


@pytest.mark.slurm
def test_a_signal_delay_as_long_as_the_time_limit_is_refused(
    cluster: None, sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    spec = train_file(tmp_path, sample_shards, time_min=10, signal_delay_s=600)
    err = refused(spec, home, "train.resources.signal_delay_s")
    assert "600 s is not shorter than the time limit (train.resources.time_min = 10 min = 600 s)" in err
    check_submission(load_spec(train_file(tmp_path, sample_shards, time_min=10, signal_delay_s=599)), ["train"])


@pytest.mark.slurm
def test_an_account_or_qos_the_user_has_not_is_refused(
    cluster: None, sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    rows = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", f"user={_user()}", "format=account,qos"],
        capture_output=True, text=True, timeout=30,
    ).stdout.split()  # fmt: skip
    if not rows:
        missing(f"sacctmgr has no association of {_user()}: run tests/cluster/slurm-up.sh")
    account, qos = rows[0].split("|")[0], rows[0].split("|")[1].split(",")[0]
    err = refused(shard_file(tmp_path, sample_data, account="nosuch"), home, "shard.resources.account")
    assert f"has no account 'nosuch' on this cluster (sacctmgr show assoc); theirs: {account}" in err
    err = refused(shard_file(tmp_path, sample_data, account=account, qos="nosuch"), home, "shard.resources.qos")
    assert f"QOS 'nosuch' is not open to {_user()} under account '{account}'" in err
    check_submission(load_spec(shard_file(tmp_path, sample_data, account=account, qos=qos)), ["shard"])


@pytest.mark.slurm
def test_requeue_without_scontrol_is_refused_unless_setup_lines_may_bring_it(
    cluster: None, sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    """The job inherits the submitting PATH: without scontrol on it, submitit could not requeue the job at its time
    limit. Setup lines may change the job's PATH: then it is a warning, and the run is submitted."""
    bin_dir, real = path_without_scontrol(tmp_path)
    env = {"PATH": str(bin_dir)}
    err = refused(train_file(tmp_path, sample_shards), home, "train.resources.setup", env)
    assert "with scontrol, which is not on PATH here" in err and "or set train.max_requeues = 0" in err

    spec = train_file(tmp_path, sample_shards, setup=[f"export PATH={real}:$PATH"], extra_sbatch=[HELD])
    result = run_cli("submit", str(spec), "--json", env=env)
    assert result.code == 0, result.err
    run_cli("cancel", json.loads(result.out)["run_id"])
    assert "clusterdeck: warning: train.resources.setup: scontrol is not on PATH here" in result.err


@pytest.mark.slurm
def test_a_slow_scheduler_is_a_warning_not_a_slow_submit(
    cluster: None, sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    """sinfo answering after a minute (a wrapper in front of the real one): submit goes on after its 5 s."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text(f'#!/bin/sh\nsleep 60\nexec {shutil.which("sinfo")} "$@"\n')
    (bin_dir / "sinfo").chmod(0o755)
    started = time.monotonic()
    spec = shard_file(tmp_path, sample_data, extra_sbatch=[HELD])
    result = run_cli("submit", str(spec), "--json", env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    took = time.monotonic() - started
    assert result.code == 0, result.err
    run_cli("cancel", json.loads(result.out)["run_id"])
    assert "clusterdeck: warning: sinfo did not answer in 5 s: the partitions' time limits and node sizes" in result.err
    assert took < 15, took  # the wrapper's minute was not waited out: 5 s of deadline and the submission


@pytest.mark.slurm
def test_a_waiting_run_shows_its_reason_in_words_and_its_expected_start(
    cluster: None, sample_data: SampleData, tmp_path: Path, home: Path
) -> None:
    """A shard job held to its begin time, and the train job after it (held by its dependency: no estimate); one
    ``squeue --start`` call for every waiting job of ``ls``, and none once nothing waits."""
    log, env = _logged_squeue(tmp_path)
    spec = shard_file(tmp_path, sample_data, extra_sbatch=[HELD])
    train = {"partition": "cpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "time_min": 10}
    spec.write_text(spec.read_text() + train_section(resources=train, batch_size=4, workers=0))
    submitted = time.time()
    result = run_cli("submit", str(spec), "--json")
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["run_id"]
    try:
        wait_for("SLURM's reasons", lambda: all(s["parts"][0]["queue"] for s in show(run_id)["steps"]), 60)
        view = show(run_id)
        held, after = (s["parts"][0]["queue"] for s in view["steps"])
        assert held["reason"] == "BeginTime" and held["text"] == REASONS["BeginTime"]
        assert abs(held["expected_start"] - (submitted + 3600)) < 120
        assert after == {"reason": "Dependency", "text": REASONS["Dependency"], "expected_start": None}
        assert view["queue"] == held and view["state"] == "PENDING"

        text, start = run_cli("show", run_id).out, when(held["expected_start"])
        assert f"queue    BeginTime: not to start before its begin time; starts about {start}" in text
        assert "Dependency: waiting for an earlier job to end; start unknown" in text

        log.write_text("")
        listing = run_cli("ls", "--json", env=env)
        assert [e["queue"] for e in json.loads(listing.out)["runs"]] == [held]
        calls = [c for c in log.read_text().splitlines() if "--start" in c]
        job_ids = {j for s in view["steps"] for j in s["job_ids"]}
        assert len(calls) == 1 and set(calls[0].split()[-1].split(",")) == job_ids, calls
        header, line = run_cli("ls").out.splitlines()
        assert header.split()[-1] == "QUEUE" and line.endswith(f"begin time; starts about {start}")
    finally:
        run_cli("cancel", run_id)
    wait_for("the cancel", lambda: show(run_id)["state"] == "CANCELLED", 60)
    log.write_text("")
    assert json.loads(run_cli("ls", "--json", env=env).out)["runs"][0]["queue"] is None
    assert not [c for c in log.read_text().splitlines() if "--start" in c]


@pytest.mark.slurm
def test_through_a_login_node_the_warnings_and_the_queue_reach_the_laptop(
    sshd: Sshd, sample_data: SampleData, tmp_path: Path
) -> None:
    """``--host``: the login node's submit warns (its sinfo answers after a minute), and the laptop says so; its
    ``ls`` shows the run's wait as the login node's does."""
    require_slurm()
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sinfo").write_text(f'#!/bin/sh\nsleep 60\nexec {shutil.which("sinfo")} "$@"\n')
    (slow / "sinfo").chmod(0o755)
    laptop = Laptop(tmp_path / "laptop", tmp_path / "runs", sshd)
    (laptop.home / ".ssh").mkdir(parents=True, mode=0o700)
    laptop.known_hosts.write_text(sshd.host_key_line())
    laptop.profile(setup=f"{LOGIN_SETUP}\nexport PATH={slow}:$PATH")
    result = laptop.cli("submit", str(shard_file(tmp_path, sample_data, extra_sbatch=[HELD])))
    assert result.code == 0, result.err
    run_id = result.out.split()[2]
    try:
        assert f"clusterdeck: warning: {HOST}: sinfo did not answer in 5 s" in result.err
        wait_for("SLURM's reason", lambda: json.loads(laptop.cli("ls", "--json").out)["runs"][0]["queue"], 60)
        queue = json.loads(laptop.local("ls", "--json").out)["runs"][0]["queue"]
        assert json.loads(laptop.cli("ls", "--json").out)["runs"][0]["queue"] == queue
        assert f"not to start before its begin time; starts about {when(queue['expected_start'])}" in (
            laptop.cli("ls").out
        )
    finally:
        laptop.cli("cancel", run_id)


def test_reasons_are_put_in_words_and_unknown_ones_kept_as_slurm_names_them() -> None:
    assert reason_text("Priority") == "waiting behind jobs of higher priority"
    assert reason_text("ReqNodeNotAvail, UnavailableNodes:node2") == REASONS["ReqNodeNotAvail"]
    assert reason_text("QOSGrpGRES") == "QOSGrpGRES"  # not a ...Limit: as SLURM names it
    assert (
        reason_text("AssocGrpCPUMinutesLimit") == "a limit of your account's group is reached (AssocGrpCPUMinutesLimit)"
    )
    assert reason_text("SomethingNew") == "SomethingNew"
    starts = parse_starts("7|2026-12-07T03:02:43|BeginTime\n8_[0-2]|N/A|Dependency\n")
    assert starts["8_[0-2]"] == ("Dependency", None)
    assert starts["7"][1] == time.mktime((2026, 12, 7, 3, 2, 43, 0, 0, -1))


def test_time_limits_read_as_sinfo_writes_them() -> None:
    limits = {"30:00": 30, "2:00:00": 120, "1-00:00:00": 1440, "1-12": 2160, "45": 45, "0:30": 1, "infinite": None}
    assert {text: time_limit_min(text) for text in limits} == limits


def _sinfo(partition: str, field: str) -> str:
    return subprocess.run(
        ["sinfo", "-h", "-p", partition, "-N", "-o", field], capture_output=True, text=True, timeout=30
    ).stdout.strip()


def _user() -> str:
    from clusterdeck.jobs.cluster import current_user

    return current_user()


def _logged_squeue(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A PATH on which every ``squeue`` call is logged by a wrapper that runs the real one."""
    bin_dir, log = tmp_path / "logged", tmp_path / "squeue.calls"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {shutil.which("squeue")} "$@"\n')
    (bin_dir / "squeue").chmod(0o755)
    log.touch()
    return log, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
