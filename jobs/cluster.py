"""What the cluster has free and what the user has queued: one ``sinfo`` and one ``squeue`` call.

``sinfo`` is asked for one line per (partition, node), so that nodes and GPUs can be counted
per partition (a node in several partitions counts in each); ``squeue`` for the user's jobs.
Neither call raises for what a login node or a laptop can show (no SLURM, a controller that
is down or slow): the view carries the error text instead, for the UI and the CLI to print.
"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

SEP = "|"
# Partition has the default's "*"; each field ends in SEP, with no padding (":" with no size).
SINFO_FIELDS = ("Partition", "NodeList", "StateLong", "Gres", "GresUsed", "Available")
SINFO = ["sinfo", "-h", "-N", "-S", "#P,N", "-O", ",".join(f"{f}:{SEP}" for f in SINFO_FIELDS)]
# Name goes last: it is the one field a user writes freely, so it may hold the separator.
SQUEUE_FIELDS = ("JobArrayID", "State", "Partition", "TimeUsed", "TimeLimit", "NumNodes", "ReasonList", "Name")
SQUEUE = ["squeue", "-h", "-O", ",".join(f"{f}:{SEP}" for f in SQUEUE_FIELDS)]
# Node state flags (sinfo's suffixes) under which an idle node still takes a job: powered off, it boots.
READY_FLAGS = "~"
OPEN_STATES = ("idle", "mixed")
"""States in which a node takes a new job, so its free GPUs count as idle."""


Runner = Callable[[list[str], float], tuple[str | None, str]]
"""Runs a command with a timeout: (stdout, "") when it answered, (None, why) when not."""


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    state: str
    """The partition's availability as sinfo says it: ``up``, ``down``, ``drain``, ``inact``."""
    nodes_idle: int
    nodes_total: int
    gpus_idle: int
    """Free GPUs on nodes that take new jobs (idle or mixed); a down or drained node's count for nothing."""
    gpus_total: int


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    """As squeue and scancel write it: ``123``, or ``123_4`` for an array task."""
    name: str
    state: str
    partition: str
    elapsed: str
    time_limit: str
    nodes: int
    reason_or_nodelist: str
    """``(Resources)`` for a pending job, the nodes for a running one."""


@dataclass(frozen=True)
class ClusterView:
    partitions: list[Partition]
    jobs: list[QueuedJob]
    error: str = ""
    """Empty when both calls answered; else why not (what was read is still there)."""


def cluster_view(user: str | None = None, timeout_s: float = 10, run: Runner | None = None) -> ClusterView:
    """The partitions and ``user``'s jobs (the current user by default); never raises for a missing SLURM.

    ``run`` runs a command where the scheduler is (this machine by default, a login node over SSH).
    """
    run = run or run_here
    sinfo, error = run(SINFO, timeout_s)
    if sinfo is None:  # no SLURM, or no controller: squeue would only say it again
        return ClusterView([], [], error)
    squeue, error = run([*SQUEUE, "-u", user or current_user()], timeout_s)
    return ClusterView(parse_sinfo(sinfo), parse_squeue(squeue or ""), error)


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions from ``SINFO``'s lines, in sinfo's order (as configured)."""
    counts: dict[str, list[int]] = {}  # name -> [nodes idle, nodes total, GPUs idle, GPUs total]
    flags: dict[str, tuple[bool, str]] = {}  # name -> (default, availability)
    for line in text.splitlines():
        fields = line.split(SEP)
        if len(fields) < len(SINFO_FIELDS):
            continue
        partition, _, state, gres, used, available = (f.strip() for f in fields[: len(SINFO_FIELDS)])
        name = partition.rstrip("*")
        flags.setdefault(name, (partition.endswith("*"), available))
        c = counts.setdefault(name, [0, 0, 0, 0])
        base, suffix = _state(state)
        gpus = gpu_count(gres)
        takes_jobs = base in OPEN_STATES and not suffix.strip(READY_FLAGS)
        c[0] += base == "idle" and takes_jobs
        c[1] += 1
        c[2] += max(gpus - gpu_count(used), 0) if takes_jobs else 0
        c[3] += gpus
    return [Partition(n, *flags[n], *c) for n, c in counts.items()]


def parse_squeue(text: str) -> list[QueuedJob]:
    """Jobs from ``SQUEUE``'s lines; a name holding the separator comes back whole."""
    jobs = []
    for line in text.splitlines():
        fields = line.split(SEP, len(SQUEUE_FIELDS) - 1)
        if len(fields) < len(SQUEUE_FIELDS):
            continue
        job_id, state, partition, elapsed, limit, nodes, reason, name = fields
        name = name.removesuffix(SEP)
        digits = re.match(r"\d+", nodes.strip())
        jobs.append(
            QueuedJob(
                job_id.strip(),
                name,
                state.strip(),
                partition.strip(),
                elapsed.strip(),
                limit.strip(),
                int(digits.group()) if digits else 0,
                reason.strip(),
            )
        )
    return jobs


def gpu_count(gres: str) -> int:
    """GPUs in a node's gres: ``gpu:8``, ``gpu:a100:4(S:0-1),shard:8``, ``gpu:a100:2(IDX:0,2)`` → 8, 4, 2."""
    total = 0
    for item in re.split(r",(?![^()]*\))", gres):  # commas outside the parentheses: IDX:0,2 is one item
        parts = item.split("(")[0].strip().split(":")
        if parts[0] != "gpu":
            continue
        total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1  # "gpu" or "gpu:a100": one
    return total


def _state(state: str) -> tuple[str, str]:
    """``idle~`` → (``idle``, ``~``): the state and its flag characters (``*`` not responding, ...)."""
    base = re.match(r"[a-z_+]*", state.lower())
    name = base.group() if base else ""
    return name, state[len(name) :]


def run_here(command: list[str], timeout_s: float) -> tuple[str | None, str]:
    """(stdout, "") when the command answered; (None, why) when not."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False)
    except FileNotFoundError:
        return None, f"no SLURM on this machine ({command[0]} not found on PATH)"
    except subprocess.TimeoutExpired:
        return None, f"{command[0]} did not answer in {timeout_s:g} s"
    except OSError as e:
        return None, f"{command[0]}: {e.strerror or e}"
    if proc.returncode != 0:
        first = next((line.strip() for line in proc.stderr.splitlines() if line.strip()), "")
        return None, first or f"{command[0]} exited with {proc.returncode}"
    return proc.stdout, ""


def current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER and no passwd entry (some containers)
        return str(os.getuid())
