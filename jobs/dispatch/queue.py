"""Jobs waiting in the SLURM queue: why, in words, and when SLURM expects to start them.

One ``squeue --start`` call for every waiting job of a listing (none when nothing waits), with a short
timeout: the listing is shown without the estimate rather than late. Without an answer, a job keeps the
reason ``sacct`` gave and an unknown start.
"""

from __future__ import annotations

import time
from dataclasses import replace

from clusterdeck.jobs.dispatch.base import JobState, QueueWait
from clusterdeck.jobs.dispatch.bounded import ask_all

WAITING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")
"""sacct's states of a job that is in the queue, not running: the jobs ``squeue --start`` is asked about."""
SQUEUE_START_TIMEOUT_S = 5.0
SQUEUE_START = ["squeue", "--start", "-h", "-o", "%i|%S|%r"]

REASONS: dict[str, str] = {
    "": "waiting for the scheduler's next pass",
    "None": "waiting for the scheduler's next pass",
    "Priority": "waiting behind jobs of higher priority",
    "Resources": "waiting for the nodes it needs to free up",
    "Dependency": "waiting for an earlier job to end",
    "DependencyNeverSatisfied": "an earlier job failed: it will never start",
    "BeginTime": "not to start before its begin time",
    "JobHeldUser": "held by its owner (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "NodeDown": "a node it needs is down",
    "PartitionTimeLimit": "asks more time than the partition allows: it will never start",
    "PartitionNodeLimit": "asks more nodes than the partition allows",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "Reservation": "waiting for its reservation to start",
    "InvalidAccount": "its account is not valid",
    "InvalidQOS": "its QOS is not valid",
    "BadConstraints": "no node has the features it asks for",
    "Licenses": "waiting for licenses",
    "JobArrayTaskLimit": "its array runs as many tasks at once as it may",
    "QOSMaxJobsPerUserLimit": "you run as many jobs as your QOS allows",
    "QOSMaxSubmitJobPerUserLimit": "you have as many jobs queued as your QOS allows",
    "QOSMaxWallDurationPerJobLimit": "asks more time than its QOS allows",
    "AssocMaxJobsLimit": "your account runs as many jobs as it may",
    "AssocMaxWallDurationPerJobLimit": "asks more time than its account allows",
    "launch failed requeued held": "its launch failed and it was held (scontrol release)",
    "Cleaning": "its previous run is being cleaned up",
}
"""SLURM's pending reasons (``squeue --help`` lists them all) as a user reads them; the others are shown as SLURM
names them, except the limits' families below."""
FAMILIES = (
    ("QOSGrp", "a limit of your QOS's group is reached"),
    ("QOS", "a limit of your QOS is reached"),
    ("AssocGrp", "a limit of your account's group is reached"),
    ("Assoc", "a limit of your account is reached"),
)
"""Prefixes of the ``…Limit`` reasons not in ``REASONS`` (``QOSGrpGRES``, ``AssocGrpCPUMinutesLimit`` …)."""


def reason_text(reason: str) -> str:
    """``Priority`` → ``waiting behind jobs of higher priority``; a reason not known here, as SLURM names it."""
    name = reason.split(",")[0].strip()  # "ReqNodeNotAvail, UnavailableNodes:node2"
    if name in REASONS:
        return REASONS[name]
    for prefix, text in FAMILIES:
        if name.startswith(prefix) and name.endswith("Limit"):
            return f"{text} ({name})"
    return reason


def with_queue(states: dict[str, JobState], timeout_s: float = SQUEUE_START_TIMEOUT_S) -> dict[str, JobState]:
    """``states`` with each waiting job's ``queue``: its reason and expected start from one ``squeue --start``
    call for all of them, or sacct's reason and an unknown start where squeue did not answer."""
    waiting = [job_id for job_id, s in states.items() if s.state in WAITING]
    if not waiting:
        return states
    starts = squeue_starts(sorted({job_id.split("_")[0] for job_id in waiting}), timeout_s)
    found = dict(states)
    for job_id in waiting:
        state = states[job_id]
        reason, start = starts.get(job_id) or _array_entry(job_id, starts) or (state.reason, None)
        found[job_id] = replace(state, queue=QueueWait(reason, reason_text(reason), start))
    return found


def squeue_starts(job_ids: list[str], timeout_s: float) -> dict[str, tuple[str, float | None]]:
    """(reason, expected start) of those of ``job_ids`` that are pending, by the id squeue prints (``123``,
    ``123_[0-3]`` for an array's tasks not yet started); empty when squeue did not answer."""
    answer = ask_all([[*SQUEUE_START, "-j", ",".join(job_ids)]], timeout_s)[0]
    return parse_starts(answer.out or "")


def parse_starts(text: str) -> dict[str, tuple[str, float | None]]:
    """``SQUEUE_START``'s lines; the start is local time (``2026-12-07T03:02:43``), ``N/A`` when unknown."""
    starts = {}
    for line in text.splitlines():
        fields = line.split("|", 2)
        if len(fields) == 3:
            job_id, start, reason = (f.strip() for f in fields)
            starts[job_id] = (reason, _epoch(start))
    return starts


def _array_entry(job_id: str, starts: dict[str, tuple[str, float | None]]) -> tuple[str, float | None] | None:
    """The line of an array's pending tasks (``123_[2-3]``) for one of them that sacct names otherwise."""
    base = job_id.split("_")[0]
    return next((v for k, v in starts.items() if k.startswith(f"{base}_[")), None) if "_" in job_id else None


def _epoch(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:  # N/A, Unknown
        return None
