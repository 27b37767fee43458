"""SLURM through submitit: sbatch with afterok chains and job arrays; sacct for state; scancel."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import submitit
from submitit.slurm.slurm import _make_sbatch_string

from clusterdeck.jobs.dispatch.base import Backend, JobState, PartPlan
from clusterdeck.jobs.dispatch.queue import with_queue
from clusterdeck.jobs.dispatch.resources import slurm_parameters
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.payloads import CheckpointablePart, run_part
from clusterdeck.jobs.records import JobRef, Role, now
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps import registry

SACCT_FIELDS = "JobID,State,ExitCode,NodeList,Reason,Start,End"


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(self) -> None:
        if shutil.which("sbatch") is None:
            raise UserError("cluster.executor: 'slurm' needs sbatch on PATH; none found on this machine")

    def submit(self, paths: RunPaths, spec: RunSpec, plans: list[PartPlan]) -> dict[str, list[JobRef]]:
        submitted: dict[str, list[JobRef]] = {}
        after: str | None = None
        for plan in plans:
            refs = []
            for group in _groups(plan.parts):
                executor = self._executor(paths, spec, step_parameters(paths, spec, plan.step, after), plan.step)
                root = str(paths.root)
                if len(group) > 1:
                    executor.update_parameters(array_parallelism=len(group))
                    jobs = executor.map_array(
                        run_part, [root] * len(group), [plan.step] * len(group), [plan.attempt] * len(group), group
                    )
                    job_id = jobs[0].job_id.split("_")[0]
                    refs.append(JobRef(job_id=job_id, role="array", tasks=len(group), submitted_at=now(), parts=group))
                else:
                    # a step that checkpoints itself is requeued by submitit at the time limit instead of failing
                    payload = CheckpointablePart() if registry.step(plan.step).checkpoints else run_part
                    job = executor.submit(payload, root, plan.step, plan.attempt, group[0])
                    role: Role = "merge" if group[0] == "merge" else "main"
                    refs.append(JobRef(job_id=job.job_id, role=role, submitted_at=now(), parts=group))
                after = refs[-1].job_id
            submitted[plan.step] = refs
        return submitted

    @staticmethod
    def _executor(paths: RunPaths, spec: RunSpec, params: dict[str, Any], step: str) -> submitit.SlurmExecutor:
        max_requeues = registry.step(step).max_requeues(spec)
        executor = submitit.SlurmExecutor(
            folder=paths.submitit, python=spec.cluster.python or None, max_num_timeout=max_requeues
        )
        executor.update_parameters(**params)
        return executor

    @classmethod
    def preview(cls, paths: RunPaths, spec: RunSpec, plans: list[PartPlan]) -> dict[str, str]:
        """The sbatch script of each job, as submitit writes it; nothing is submitted, and neither sbatch nor
        srun is needed (an executor would look for srun), so a laptop can preview a cluster's scripts."""
        python = spec.cluster.python or shlex.quote(sys.executable)  # as submitit quotes its default
        command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(paths.submitit))])
        scripts: dict[str, str] = {}
        after: str | None = None
        for plan in plans:
            for group in _groups(plan.parts):
                params = step_parameters(paths, spec, plan.step, after)
                if len(group) > 1:
                    params.update(map_count=len(group), array_parallelism=len(group))  # as map_array sets them
                name = plan.step if group == ["main"] else f"{plan.step} {group[0] if len(group) == 1 else 'array'}"
                scripts[name] = _make_sbatch_string(command=command, folder=paths.submitit, **params)
                after = f"<{name} job id>"
        return scripts

    def preflight(self, spec: RunSpec, steps: Collection[str]) -> list[str]:
        from clusterdeck.jobs.dispatch.slurm_checks import check_submission

        return check_submission(spec, steps)

    def states(self, jobs: list[JobRef]) -> dict[str, JobState]:
        """sacct's states; the waiting jobs' reasons and expected starts from one ``squeue --start``."""
        return with_queue(sacct_states([j.job_id for j in jobs]))

    def cancel(self, jobs: list[JobRef]) -> None:
        if jobs:
            subprocess.run(["scancel", *[j.job_id for j in jobs]], check=False, capture_output=True)


def step_parameters(paths: RunPaths, spec: RunSpec, step: str, after: str | None) -> dict[str, Any]:
    """submitit's parameters for one job of ``step``, started after job ``after`` succeeded.

    The step's resources, then its own extras (GPUs, the warning signal's delay). ``srun`` gets
    ``--cpus-per-task`` again: Slurm 22.05 to 23.02 do not pass sbatch's value on to srun, so each task gets
    one CPU (bound to it where the cluster binds tasks to CPUs) and ``workers = "auto"`` runs one loader worker;
    then the step's own srun options (``--kill-on-bad-exit`` where its ranks live and die together).
    """
    kind = registry.step(step)
    resources = kind.resources(spec)
    params = slurm_parameters(resources, step + ".resources")
    params.update(kind.sbatch_extras(spec))
    params["job_name"] = f"cd-{paths.run_id}-{step}"
    if after:
        params["dependency"] = f"afterok:{after}"
        params["additional_parameters"] = {**params["additional_parameters"], "kill_on_invalid_dep": "yes"}
    params["srun_args"] = [f"--cpus-per-task={resources.cpus_per_task}", *kind.srun_args(spec)]
    return params


def _groups(parts: list[str]) -> list[list[str]]:
    """Array tasks go in one array job; ``main``, ``spill`` and ``merge`` are jobs of their own; in the parts'
    order, each job after the one before."""
    groups: list[list[str]] = []
    for part in parts:
        if part.startswith("task-") and groups and groups[-1][0].startswith("task-"):
            groups[-1].append(part)
        else:
            groups.append([part])
    return groups


def sacct_states(job_ids: list[str]) -> dict[str, JobState]:
    """Every job's state from one ``sacct`` call (never one call per job); a job that lost a node says which."""
    if not job_ids:
        return {}
    try:
        # -D: every run of a requeued job, oldest first. Without it, a job that SLURM requeued after a node
        # failure reads NODE_FAIL while it waits to run again, and a resume would start a second copy.
        out = _run(["sacct", "-X", "-D", "-n", "-P", "-o", SACCT_FIELDS, "-j", ",".join(job_ids)])
    except (OSError, subprocess.SubprocessError):
        return {}
    return states_from(out)


WAITING_AGAIN = ("NODE_FAIL", "PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")
"""Latest states of a job after which its lost node is worth naming: it ended with the node, or waits to run
again. Once its requeued run is RUNNING or over, the node is history: no ``sacctmgr`` call on every poll."""


def states_from(out: str) -> dict[str, JobState]:
    """Each job's state from ``sacct -X -D -P -o SACCT_FIELDS`` lines; a job that lost a node and waits again
    (or ended with it) says which node, from one ``sacctmgr`` call for all of them, once per process."""
    states = parse_sacct(out)
    failures = {j: f for j, f in node_failures(out).items() if states[j].state in WAITING_AGAIN}
    # The accounting database records the requeued run a moment after the NODE_FAIL one: ask the controller.
    again = queued([j for j in failures if states[j].state == "NODE_FAIL"])
    lost = lost_nodes_of(failures)
    for job_id in failures:
        state = JobState(again[job_id]) if job_id in again else states[job_id]
        states[job_id] = replace(state, node_failure=f"node {lost[job_id]} failed")
    return states


def queued(job_ids: list[str]) -> dict[str, str]:
    """The controller's state of those of ``job_ids`` it still holds (``squeue``): a requeued job is PENDING.

    Some SLURM versions fail the whole ``squeue -j`` when one id of the list was purged: what it printed is
    read whatever its exit code, and when it failed printing nothing, the ids are asked one at a time, so
    that one purged job does not make a requeued one read NODE_FAIL again.
    """
    if not job_ids:
        return {}
    found, ok = _squeue(job_ids)
    if not ok and not found and len(job_ids) > 1:
        for job_id in job_ids:
            found.update(_squeue([job_id])[0])
    return found


def _squeue(job_ids: list[str]) -> tuple[dict[str, str], bool]:
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-o", "%i|%T", "-j", ",".join(job_ids)],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}, False
    found = dict(line.split("|", 1) for line in proc.stdout.splitlines() if "|" in line)
    return found, proc.returncode == 0


def parse_sacct(text: str) -> dict[str, JobState]:
    """The latest run of each job (``sacct -D`` lists a requeued job's runs oldest first)."""
    states: dict[str, JobState] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 5:
            continue
        job_id, state, exit_code, nodes, reason = fields[:5]
        # "CANCELLED by 0" → "CANCELLED"; pending arrays show as 123_[0-3]
        states[job_id] = JobState(
            state.split()[0] if state else "UNKNOWN",
            nodes if nodes != "None assigned" else "",
            exit_code,
            reason if reason != "None" else "",
        )
    return states


def node_failures(text: str) -> dict[str, tuple[str, str, str]]:
    """Jobs whose latest NODE_FAIL run (``sacct -D`` lines) is known: its nodes, start and end."""
    failed = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) >= 7 and fields[1] == "NODE_FAIL" and fields[6] not in ("", "Unknown"):
            failed[fields[0]] = (fields[3], fields[5], fields[6])
    return failed


_CAUSES: dict[tuple[str, str], str] = {}
"""Lost nodes already found, by (job, end of its NODE_FAIL run), for the life of the process: an app that
polls every few seconds asks ``sacctmgr`` about each node failure once, not on every poll."""
_SETTLED = timedelta(minutes=2)
"""After this long past a job's end, the database has the node's event if it ever will: "not found" is kept."""


def lost_nodes_of(failures: dict[str, tuple[str, str, str]]) -> dict[str, str]:
    """Each job's lost node(s) and why (``failures``: job → its NODE_FAIL run's nodes, start, end), from one
    ``sacctmgr show event`` call for all the jobs not answered before (Nodes: all theirs, from the earliest
    start to the latest end): sacct names only all of a job's nodes. ``one of <nodes>`` when unknown."""
    answers = {j: _CAUSES[(j, f[2])] for j, f in failures.items() if (j, f[2]) in _CAUSES}
    asked = {j: f for j, f in failures.items() if j not in answers}
    if not asked:
        return answers
    nodes = ",".join(sorted({n for f in asked.values() for n in hostnames(f[0])}))
    events = node_events(nodes, min(f[1] for f in asked.values()), max(_later(f[2]) for f in asked.values()))
    for job_id, (job_nodes, start, end) in asked.items():
        hosts = set(hostnames(job_nodes))
        found: dict[str, str] = {}
        for node, reason, began, ended in events or []:
            if node in hosts and node not in found and began <= _later(end) and (not _iso(ended) or ended >= start):
                found[node] = reason
        text = ", ".join(f"{node} ({reason})" if reason else node for node, reason in found.items())
        answers[job_id] = text or f"one of {job_nodes}"
        if text or (events is not None and _settled(end)):
            _CAUSES[(job_id, end)] = answers[job_id]
    return answers


def lost_nodes(nodes: str, start: str, end: str) -> str:
    """Which of ``nodes`` went down while a job ran on them between ``start`` and ``end``; empty when unknown."""
    lost = lost_nodes_of({"": (nodes, start, end)})[""]
    return "" if lost.startswith("one of ") else lost


def node_events(nodes: str, start: str, until: str) -> list[tuple[str, str, str, str]] | None:
    """The accounting database's node events (``sacctmgr show event``: node, reason, start, end) of ``nodes``
    from ``start`` to ``until``; a node is marked down as its jobs end, so up to a minute after. None when
    ``sacctmgr`` could not answer."""
    try:
        out = _run(
            ["sacctmgr", "-n", "-P", "show", "event", f"Nodes={nodes}", f"Start={start}", f"End={until}",
             "format=NodeName,Reason,TimeStart,TimeEnd"]
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    events = []
    for line in out.splitlines():
        fields = line.split("|")
        if len(fields) >= 4 and fields[0]:
            events.append((fields[0], fields[1], fields[2], fields[3]))
    return events


def hostnames(nodelist: str) -> list[str]:
    """``node[1-2,5],vm`` → node1, node2, node5, vm (a SLURM host list, zero padding kept)."""
    names: list[str] = []
    for prefix, ranges in re.findall(r"([^,\[]+)(?:\[([^\]]*)\])?", nodelist):
        if not ranges:
            names.append(prefix)
            continue
        for item in ranges.split(","):
            low, _, high = item.partition("-")
            if high and low.isdigit() and high.isdigit():
                names.extend(f"{prefix}{i:0{len(low)}d}" for i in range(int(low), int(high) + 1))
            else:
                names.append(prefix + item)
    return names


def _iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _later(end: str) -> str:
    """A minute after ``end`` (sacct's local time, as sacctmgr reads it)."""
    try:
        return (datetime.fromisoformat(end) + timedelta(minutes=1)).isoformat(timespec="seconds")
    except ValueError:
        return end


def _settled(end: str) -> bool:
    try:
        return datetime.now() - datetime.fromisoformat(end) > _SETTLED
    except ValueError:
        return False


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
