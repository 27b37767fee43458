"""The embedded executor: submitit's LocalExecutor, one detached process per submission.

SLURM's ``afterok`` has no local equivalent, so one local job runs every submitted part
in order (``payloads.run_chain``). The job is started in its own session with no
terminal attached: it outlives the CLI that submitted it, a Ctrl-C on ``submit --wait``
stops the waiting and not the job, and the CLI's output pipes are not held open.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import submitit
from submitit.local.local import LocalJob

from clusterdeck.jobs.dispatch.base import Backend, JobState, PartPlan
from clusterdeck.jobs.dispatch.resources import local_parameters
from clusterdeck.jobs.payloads import run_chain
from clusterdeck.jobs.records import JobRef, now
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps import registry

CANCEL_GRACE_S = 5.0


class _DetachedLocalExecutor(submitit.LocalExecutor):
    def _submit_command(self, command: str) -> LocalJob[Any]:
        env = dict(os.environ)
        env.update(
            SUBMITIT_LOCAL_NTASKS="1",
            SUBMITIT_LOCAL_COMMAND=command,
            SUBMITIT_LOCAL_TIMEOUT_S=str(int(60 * self.parameters.get("timeout_min", 60))),
            SUBMITIT_LOCAL_SIGNAL_DELAY_S=str(int(self.parameters.get("signal_delay_s", 30))),
            SUBMITIT_LOCAL_NODEID="0",
            SUBMITIT_LOCAL_JOB_NUM_NODES="1",
            SUBMITIT_STDERR_TO_STDOUT="",
            SUBMITIT_EXECUTOR="local",
            SUBMITIT_LOCAL_WITH_SHELL="",
        )
        process = subprocess.Popen(
            controller_argv(self.folder, self.parameters.get("setup", ())),
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return LocalJob(folder=self.folder, job_id=str(process.pid), process=process, tasks=[0])


def controller_argv(folder: Path, setup: Sequence[str]) -> list[str]:
    controller = shlex.join([sys.executable, "-m", "submitit.local._local", str(folder)])
    # With setup lines the controller runs under `sh -c … && exec`, so its pid is still the job id.
    return ["/bin/sh", "-c", " && ".join([*setup, f"exec {controller}"])]


class LocalBackend(Backend):
    name = "local"

    def submit(self, paths: RunPaths, spec: RunSpec, plans: list[PartPlan]) -> dict[str, list[JobRef]]:
        executor = self._executor(paths, spec, plans)
        job = executor.submit(run_chain, str(paths.root), [(p.step, p.attempt, p.parts) for p in plans])
        started = _create_time(int(job.job_id))
        submitted = now()
        return {
            p.step: [
                JobRef(job_id=job.job_id, role="main", submitted_at=submitted, parts=p.parts, pid_started_at=started)
            ]
            for p in plans
        }

    @staticmethod
    def _executor(paths: RunPaths, spec: RunSpec, plans: list[PartPlan]) -> _DetachedLocalExecutor:
        executor = _DetachedLocalExecutor(folder=paths.submitit, python=spec.cluster.python or None)
        executor.update_parameters(**_parameters(spec, plans))
        return executor

    @classmethod
    def preview(cls, paths: RunPaths, spec: RunSpec, plans: list[PartPlan]) -> dict[str, str]:
        if not plans:
            return {}
        params = _parameters(spec, plans)  # no executor: making one creates its folder
        steps = ", ".join(p.step for p in plans)
        return {
            "local": f"# One process on this machine runs {steps} in order, detached from the terminal;\n"
            f"# time limit {params['timeout_min']} min (the steps' time_min added up).\n"
            f"{shlex.join(controller_argv(paths.submitit, params['setup']))}\n"
        }

    def states(self, jobs: list[JobRef]) -> dict[str, JobState]:
        found = {}
        for job in jobs:
            # A finished process leaves no exit state behind: EXITED defers to the payload's status files.
            running = _is_ours(job)
            # an exited job's node is the one its parts reported, not wherever this runs now
            found[job.job_id] = JobState(
                "RUNNING" if running else "EXITED", node=os.uname().nodename if running else ""
            )
        return found

    def cancel(self, jobs: list[JobRef]) -> None:
        """SIGINT to the job's whole process group (controller, payload, writer processes), SIGKILL if it lingers.

        submitit's tasks ignore SIGTERM (SLURM sends it before preemption), so SIGINT is the
        signal that reaches our payload as KeyboardInterrupt and lets it record how it ended.
        """
        groups = []
        for job in jobs:
            if _is_ours(job):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(job.job_id), signal.SIGINT)
                    groups.append(int(job.job_id))
        deadline = time.monotonic() + CANCEL_GRACE_S
        while groups and time.monotonic() < deadline:
            groups = [g for g in groups if _group_alive(g)]
            time.sleep(0.1)
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def _parameters(spec: RunSpec, plans: list[PartPlan]) -> dict[str, Any]:
    resources = [registry.step(p.step).resources(spec) for p in plans]
    params = local_parameters(resources[0])
    params["timeout_min"] = sum(r.time_min for r in resources)
    return params


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _is_ours(job: JobRef) -> bool:
    try:
        proc = psutil.Process(int(job.job_id))
        return proc.status() != psutil.STATUS_ZOMBIE and (
            job.pid_started_at is None or abs(proc.create_time() - job.pid_started_at) < 1.0
        )
    except (psutil.Error, ValueError):
        return False
