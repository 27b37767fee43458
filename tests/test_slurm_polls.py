"""What a status poll costs the SLURM daemons: the app polls every few seconds for as long as it is open."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jobs.dispatch import slurm

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
