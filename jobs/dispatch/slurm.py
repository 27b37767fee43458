"""SLURM through submitit: sbatch with afterok chains and job arrays; sacct for state; scancel."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import submitit
from submitit.slurm.slurm import _make_sbatch_string

from jobs.dispatch.base import Backend, JobState, PartPlan
from jobs.dispatch.resources import slurm_parameters
from jobs.errors import UserError
from jobs.payloads import CheckpointablePart, run_part
from jobs.records import JobRef, Role, now
from jobs.rundir import RunPaths
from jobs.spec import RunSpec

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
                    # train checkpoints itself: submitit requeues it at the time limit instead of failing it
                    payload = CheckpointablePart() if plan.step == "train" else run_part
                    job = executor.submit(payload, root, plan.step, plan.attempt, group[0])
                    role: Role = "merge" if group[0] == "merge" else "main"
                    refs.append(JobRef(job_id=job.job_id, role=role, submitted_at=now(), parts=group))
                after = refs[-1].job_id
            submitted[plan.step] = refs
        return submitted

    @staticmethod
    def _executor(paths: RunPaths, spec: RunSpec, params: dict[str, Any], step: str) -> submitit.SlurmExecutor:
        max_requeues = spec.train.max_requeues if step == "train" and spec.train else 0
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

    def states(self, jobs: list[JobRef]) -> dict[str, JobState]:
        return sacct_states([j.job_id for j in jobs])

    def cancel(self, jobs: list[JobRef]) -> None:
        if jobs:
            subprocess.run(["scancel", *[j.job_id for j in jobs]], check=False, capture_output=True)


def step_parameters(paths: RunPaths, spec: RunSpec, step: str, after: str | None) -> dict[str, Any]:
    """submitit's parameters for one job of ``step``, started after job ``after`` succeeded."""
    resources = getattr(spec, step).resources
    params = slurm_parameters(resources, step + ".resources")
    params["job_name"] = f"cd-{paths.run_id}-{step}"
    if after:
        params["dependency"] = f"afterok:{after}"
        params["additional_parameters"] = {**params["additional_parameters"], "kill_on_invalid_dep": "yes"}
    if step in ("train", "evaluate"):
        params["srun_args"] = ["--kill-on-bad-exit=1"]  # one failed rank ends them all, no NCCL hang
    return params


def _groups(parts: list[str]) -> list[list[str]]:
    """Array tasks go in one array job; ``main`` and ``merge`` are jobs of their own."""
    tasks = [p for p in parts if p.startswith("task-")]
    return ([tasks] if tasks else []) + [[p] for p in parts if not p.startswith("task-")]


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
    states = parse_sacct(out)
    failures = node_failures(out)
    # The accounting database records the requeued run a moment after the NODE_FAIL one: ask the controller.
    again = queued([j for j in failures if states[j].state == "NODE_FAIL"])
    for job_id, (nodes, start, end) in failures.items():
        lost = lost_nodes(nodes, start, end) or f"one of {nodes}"
        state = JobState(again[job_id]) if job_id in again else states[job_id]
        states[job_id] = replace(state, node_failure=f"node {lost} failed")
    return states


def queued(job_ids: list[str]) -> dict[str, str]:
    """The controller's state of those of ``job_ids`` it still holds (``squeue``): a requeued job is PENDING."""
    if not job_ids:
        return {}
    try:
        out = _run(["squeue", "-h", "-o", "%i|%T", "-j", ",".join(job_ids)])
    except (OSError, subprocess.SubprocessError):
        return {}  # squeue fails when none of them is known any more
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


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


def lost_nodes(nodes: str, start: str, end: str) -> str:
    """Which of ``nodes`` went down while a job ran on them, and why, from the accounting database's node
    events (``sacctmgr show event``; a node is marked down as its jobs end, so up to a minute after ``end``):
    sacct names only all of the job's nodes. Empty when unknown."""
    try:
        until = (datetime.fromisoformat(end) + timedelta(minutes=1)).isoformat(timespec="seconds")
        out = _run(
            ["sacctmgr", "-n", "-P", "show", "event", f"Nodes={nodes}", f"Start={start}", f"End={until}",
             "format=NodeName,Reason"]
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    found: dict[str, str] = {}
    for line in out.splitlines():
        node, _, reason = line.partition("|")
        if node and node not in found:
            found[node] = reason
    return ", ".join(f"{node} ({reason})" if reason else node for node, reason in found.items())


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
