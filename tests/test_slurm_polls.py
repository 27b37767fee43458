"""What a status poll costs the SLURM daemons: the app polls every few seconds for as long as it is open."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from clusterdeck.jobs.dispatch import slurm

# sacct -X -D -P lines (SACCT_FIELDS) of four jobs that lost a node, as a node loss prints them; dated 2020,
# before any event of the test cluster, so the database's answer (no event) is known
CAPTURED = (
    "35|NODE_FAIL|0:0|node[1-2]|None|2020-01-06T04:03:07|2020-01-06T04:03:58\n"
    "35|PENDING|0:0|None assigned|BeginTime|Unknown|Unknown\n"  # requeued, waiting to run again
    "40|NODE_FAIL|0:0|node3|None|2020-01-06T04:10:00|2020-01-06T04:11:00\n"  # ended with its node
    "41|NODE_FAIL|0:0|node1|None|2020-01-05T04:10:00|2020-01-05T04:11:00\n"
    "41|RUNNING|0:0|node2|None|2020-01-05T04:12:00|Unknown\n"  # running again: the loss is history
    "42|NODE_FAIL|0:0|node4|None|2020-01-04T04:10:00|2020-01-04T04:11:00\n"
    "42|COMPLETED|0:0|node5|None|2020-01-04T04:12:00|2020-01-04T05:00:00\n"
    "43|COMPLETED|0:0|vm|None|2020-01-06T04:05:00|2020-01-06T04:06:00\n"
)


@pytest.fixture
def sacctmgr_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every ``sacctmgr`` call, logged by a wrapper on PATH that runs the real one."""
    real = shutil.which("sacctmgr")
    if real is None:
        pytest.skip("no sacctmgr on this machine")
    bin_dir, log = tmp_path / "bin", tmp_path / "sacctmgr.calls"
    bin_dir.mkdir()
    wrapper = bin_dir / "sacctmgr"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(slurm, "_CAUSES", {})
    return log


def test_lost_nodes_are_asked_once_for_all_jobs_and_only_for_jobs_waiting_again(sacctmgr_calls: Path) -> None:
    states = slurm.states_from(CAPTURED)
    calls = sacctmgr_calls.read_text().splitlines()
    assert len(calls) == 1, calls  # one call for every job, not one per job
    assert "Nodes=node1,node2,node3 " in calls[0] and "Start=2020-01-06T04:03:07 " in calls[0]
    assert "End=2020-01-06T04:12:00 " in calls[0]
    assert states["35"].state == "PENDING" and states["35"].node_failure == "node one of node[1-2] failed"
    assert states["40"].node_failure == "node one of node3 failed"
    assert (states["41"].state, states["41"].node_failure) == ("RUNNING", "")
    assert (states["42"].state, states["42"].node_failure) == ("COMPLETED", "")
    assert states["43"].node_failure == ""
    for _ in range(3):  # the next polls: answered from what this process already asked
        assert slurm.states_from(CAPTURED) == states
    assert len(sacctmgr_calls.read_text().splitlines()) == 1


def test_host_lists_are_expanded_to_match_events_to_jobs() -> None:
    assert slurm.hostnames("node[1-2,05],vm,gpu[01-03]") == [
        "node1", "node2", "node05", "vm", "gpu01", "gpu02", "gpu03"
    ]  # fmt: skip


@pytest.mark.slurm
def test_a_purged_id_in_the_list_does_not_hide_the_queued_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A requeued job is PENDING to the controller even when another id asked with it was purged.

    This SLURM answers such a list; some versions fail the whole ``squeue -j``. The second half runs the real
    squeue behind a wrapper that fails as those do (exit 1, nothing printed) when any id asked is unknown.
    """
    from tests.conftest import require_slurm

    require_slurm()
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--hold", "-p", "cpu", "-t", "1", "-o", "/dev/null", "-J", "cd-queued",
         "--wrap", "true"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    purged = "999999991"
    try:
        assert slurm.queued([job_id, purged]) == {job_id: "PENDING"}
        assert slurm.queued([purged]) == {}
        real = shutil.which("squeue")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "squeue"
        wrapper.write_text(
            "#!/bin/sh\n"
            'ids=""; prev=""; for a in "$@"; do [ "$prev" = "-j" ] && ids="$a"; prev="$a"; done\n'
            'for id in $(echo "$ids" | tr , " "); do\n'
            f'  {real} -h -j "$id" >/dev/null 2>&1 || {{ echo "slurm_load_jobs error: Invalid job id" >&2; exit 1; }}\n'
            "done\n"
            f'exec {real} "$@"\n'
        )
        wrapper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        assert subprocess.run(["squeue", "-h", "-j", f"{job_id},{purged}"], capture_output=True).returncode == 1
        assert slurm.queued([job_id, purged]) == {job_id: "PENDING"}
    finally:
        subprocess.run(["scancel", job_id], check=False)
