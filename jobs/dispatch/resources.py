"""Where spec resources become submitit/sbatch parameters; a step kind adds its own (``Step.sbatch_extras``)."""

from __future__ import annotations

from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.spec import Resources


def extra_sbatch(lines: list[str], where: str) -> dict[str, Any]:
    """``["--exclusive", "--mail-type=END"]`` → ``{"exclusive": True, "mail_type": "END"}`` (submitit's form)."""
    params: dict[str, Any] = {}
    for line in lines:
        if not line.startswith("--") or len(line) < 3:
            raise UserError(f"{where}.extra_sbatch: expected --key=value or --flag, got {line!r}")
        key, sep, value = line[2:].partition("=")
        params[key.replace("-", "_")] = value if sep else True
    return params


def slurm_parameters(res: Resources, where: str) -> dict[str, Any]:
    """The common sbatch parameters of a step's resources; a step adds its own (``Step.sbatch_extras``)."""
    params: dict[str, Any] = {
        "time": res.time_min,
        "nodes": res.nodes,
        "ntasks_per_node": res.tasks,
        "cpus_per_task": res.cpus_per_task,
        "mem": f"{mem_mb(res)}M",
        "setup": list(res.setup),
        "additional_parameters": extra_sbatch(res.extra_sbatch, where),
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(res, key):
            params[key] = getattr(res, key)
    return params


def mem_mb(res: Resources) -> int:
    """The memory per node sbatch is asked for (``--mem``), in MB."""
    return max(1, round(res.mem_gb * 1024))


def local_parameters(res: Resources) -> dict[str, Any]:
    return {"timeout_min": res.time_min, "setup": list(res.setup)}
