"""Checks of a run's SLURM resources against the cluster, at submit, before anything is written or submitted.

SLURM takes many impossible jobs and leaves them pending for ever (a time over the partition's MaxTime), or
refuses one job of a chain after the jobs before it were queued. Checked here, each problem names its spec key
and the submission is refused (exit 2):

- the signal delay is shorter than the time limit (the spec alone);
- ``scontrol`` is on PATH for a step that submitit requeues at its time limit (the job inherits this PATH);
- the partition exists, its MaxTime covers ``time_min``, and some node of it has the GPUs, CPUs and memory a
  node is asked for (as many such nodes as ``nodes``): one ``sinfo`` call for every step;
- the account and QOS are among the user's associations: one ``sacctmgr show assoc`` call, only when a step
  names either; skipped without a word when sacctmgr is missing or fails (no accounting database).

What the user may know better is a warning and the run is submitted: ``scontrol`` missing here while setup lines
(or ``--export``) may set the job's PATH, and a scheduler that did not answer in ``CHECK_TIMEOUT_S`` (both calls
run side by side under that one deadline, so a slow controller costs a submit at most that long).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass, replace

from clusterdeck.jobs.cluster import SEP, current_user, gpu_count
from clusterdeck.jobs.dispatch.bounded import ask_all
from clusterdeck.jobs.dispatch.resources import extra_sbatch, mem_mb
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps import registry

CHECK_TIMEOUT_S = 5.0
SINFO_FIELDS = ("Partition", "NodeList", "CPUs", "Memory", "Gres", "Time")
SINFO = ["sinfo", "-a", "-h", "-N", "-O", ",".join(f"{f}:{SEP}" for f in SINFO_FIELDS)]


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int


@dataclass
class PartitionLimits:
    name: str
    default: bool
    max_time_min: int | None
    """The partition's MaxTime in minutes; None when it has none."""
    nodes: list[Node]


@dataclass(frozen=True)
class Ask:
    """What one step's jobs ask of the cluster, as sbatch is told (``jobs.dispatch.slurm.step_parameters``)."""

    step: str
    key: str
    """``train.resources``: where the step's resources are in the spec."""
    partition: str
    nodes: int
    tasks: int
    cpus_per_task: int
    mem_mb: int
    gpus: int
    time_min: int
    account: str
    qos: str
    signal_delay_s: int | None
    requeues: bool
    """submitit requeues the step at its time limit, with ``scontrol``."""
    sets_path: bool
    """Setup lines or ``--export`` may give the job another PATH than this one."""


def check_submission(spec: RunSpec, steps: Collection[str], timeout_s: float = CHECK_TIMEOUT_S) -> list[str]:
    """A ``UserError`` with every problem of ``steps``' resources on this cluster; the warnings, else."""
    asks = [ask_of(spec, name) for name in spec.steps if name in steps]
    problems = [p for ask in asks for p in signal_problems(ask)]
    warnings: list[str] = []
    requeued = next((a for a in asks if a.requeues), None)
    if requeued is not None and shutil.which("scontrol") is None:
        (warnings if requeued.sets_path else problems).append(scontrol_missing(requeued))
    commands = [SINFO]
    user = current_user()
    if any(a.account or a.qos for a in asks) and shutil.which("sacctmgr"):
        commands.append(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=account,qos"])
    answers = ask_all(commands, timeout_s)
    if answers[0].out is None:
        warnings.append(f"{answers[0].error}: the partitions' time limits and node sizes were not checked")
    else:
        partitions = parse_partitions(answers[0].out)
        problems += [p for ask in asks for p in resource_problems(ask, partitions)]
    if len(answers) > 1:
        if answers[1].out is not None:
            problems += association_problems(asks, answers[1].out, user)
        elif answers[1].timed_out:
            warnings.append(f"{answers[1].error}: the accounts and QOS were not checked")
    if problems:
        raise UserError(*problems)
    return warnings


def ask_of(spec: RunSpec, step: str) -> Ask:
    kind = registry.step(step)
    res = kind.resources(spec)
    extras = kind.sbatch_extras(spec)
    key = f"{step}.resources"
    delay = extras.get("signal_delay_s")
    return Ask(
        step=step,
        key=key,
        partition=res.partition,
        nodes=res.nodes,
        tasks=res.tasks,
        cpus_per_task=res.cpus_per_task,
        mem_mb=mem_mb(res),
        gpus=int(extras.get("gpus_per_node") or 0),
        time_min=res.time_min,
        account=res.account,
        qos=res.qos,
        signal_delay_s=int(delay) if delay is not None else None,
        requeues=kind.checkpoints and kind.max_requeues(spec) > 0,
        sets_path=bool(res.setup) or "export" in extra_sbatch(res.extra_sbatch, key),
    )


def signal_problems(ask: Ask) -> list[str]:
    """SLURM's warning signal comes ``signal_delay_s`` before the time limit: at or before the start, it would
    ask the job to checkpoint and requeue as soon as it runs."""
    if ask.signal_delay_s is None or ask.signal_delay_s < ask.time_min * 60:
        return []
    return [
        f"{ask.key}.signal_delay_s: {ask.signal_delay_s} s is not shorter than the time limit "
        f"({ask.key}.time_min = {ask.time_min} min = {ask.time_min * 60} s): the job would be told to stop as it starts"
    ]


def scontrol_missing(ask: Ask) -> str:
    if ask.sets_path:
        return (
            f"{ask.key}.setup: scontrol is not on PATH here, and submitit needs it on the nodes to requeue "
            f"{ask.step} at its time limit: make sure the setup lines (or --export) put it on the job's PATH"
        )
    return (
        f"{ask.key}.setup: submitit requeues {ask.step} at its time limit with scontrol, which is not on PATH here, "
        f"and the job inherits this PATH: put its directory on PATH, add a setup line that does, "
        f"or set {ask.step}.max_requeues = 0"
    )


def resource_problems(ask: Ask, partitions: dict[str, PartitionLimits]) -> list[str]:
    """The partition exists, its MaxTime covers the time asked, and ``nodes`` of its nodes have what one is asked.
    A list (``gpu,long``: sbatch starts the job in the first that can) passes when one of them does."""
    if "," in ask.partition:
        found = [resource_problems(replace(ask, partition=p.strip()), partitions) for p in ask.partition.split(",")]
        return [] if any(not problems for problems in found) else found[0]
    if ask.partition:
        part = partitions.get(ask.partition)
        if part is None:
            known = ", ".join(sorted(partitions)) or "none"
            return [f"{ask.key}.partition: no partition {ask.partition!r} on this cluster (it has: {known})"]
    else:
        part = next((p for p in partitions.values() if p.default), None)
        if part is None:  # no default partition: sbatch says so itself
            return []
    problems = []
    if part.max_time_min is not None and ask.time_min > part.max_time_min:
        problems.append(
            f"{ask.key}.time_min: {ask.time_min} minutes asked; partition {part.name!r} allows at most "
            f"{part.max_time_min} (its MaxTime)"
        )
    cpus = ask.cpus_per_task * ask.tasks
    fit = [n for n in part.nodes if n.gpus >= ask.gpus and n.cpus >= cpus and n.mem_mb >= ask.mem_mb]
    if len(fit) >= ask.nodes or not part.nodes:
        return problems
    where = f"partition {part.name!r}"
    if not fit:
        most_gpus = max(n.gpus for n in part.nodes)
        most_cpus = max(n.cpus for n in part.nodes)
        most_mem = max(n.mem_mb for n in part.nodes)
        if ask.gpus > most_gpus:
            has = f"the most a node of {where} has is {most_gpus}" if most_gpus else f"{where} has no GPUs"
            problems.append(f"{ask.key}.gpus_per_node: {ask.gpus} GPUs asked per node; {has}")
        if cpus > most_cpus:
            asked = f"{ask.tasks} tasks × {ask.cpus_per_task} = {cpus}" if ask.tasks > 1 else str(cpus)
            problems.append(
                f"{ask.key}.cpus_per_task: {asked} CPUs asked per node; the most a node of {where} has is {most_cpus}"
            )
        if ask.mem_mb > most_mem:
            problems.append(
                f"{ask.key}.mem_gb: {ask.mem_mb / 1024:g} GB asked per node; "
                f"the most a node of {where} has is {most_mem / 1024:.1f} GB"
            )
        if ask.gpus <= most_gpus and cpus <= most_cpus and ask.mem_mb <= most_mem:
            problems.append(
                f"{ask.key}: no node of {where} has {ask.gpus} GPUs, {cpus} CPUs and {ask.mem_mb / 1024:g} GB together"
            )
        return problems
    problems.append(
        f"{ask.key}.nodes: {ask.nodes} nodes asked; {where} has {len(fit)} with {ask.gpus} GPUs, {cpus} CPUs "
        f"and {ask.mem_mb / 1024:g} GB"
    )
    return problems


def association_problems(asks: list[Ask], text: str, user: str) -> list[str]:
    """Accounts and QOS named by ``asks`` that none of ``user``'s associations (``sacctmgr show assoc``) has.

    A user with no association at all is not checked: the cluster does not keep them (or not for this user).
    """
    rows = [line.split("|") for line in text.splitlines() if line.count("|") >= 1]
    accounts = {r[0] for r in rows if r[0]}
    if not accounts:
        return []
    problems = []
    for ask in asks:
        if ask.account and ask.account not in accounts:
            problems.append(
                f"{ask.key}.account: {user} has no account {ask.account!r} on this cluster (sacctmgr show assoc); "
                f"theirs: {', '.join(sorted(accounts))}"
            )
            continue
        if not ask.qos:
            continue
        allowed = {q for r in rows if not ask.account or r[0] == ask.account for q in r[1].split(",") if q}
        if allowed and ask.qos not in allowed:
            under = f" under account {ask.account!r}" if ask.account else ""
            problems.append(
                f"{ask.key}.qos: QOS {ask.qos!r} is not open to {user}{under} (sacctmgr show assoc); "
                f"open: {', '.join(sorted(allowed))}"
            )
    return problems


def parse_partitions(text: str) -> dict[str, PartitionLimits]:
    """``SINFO``'s lines (one per partition and node), by partition, in sinfo's order."""
    partitions: dict[str, PartitionLimits] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(SEP)]
        if len(fields) < len(SINFO_FIELDS):
            continue
        partition, node, cpus, memory, gres, limit = fields[: len(SINFO_FIELDS)]
        name = partition.rstrip("*")
        part = partitions.setdefault(name, PartitionLimits(name, partition.endswith("*"), time_limit_min(limit), []))
        part.nodes.append(Node(node, _number(cpus), _number(memory), gpu_count(gres)))
    return partitions


def time_limit_min(text: str) -> int | None:
    """sinfo's time limit in minutes, rounded up: ``30:00``, ``2:00:00``, ``1-12:00:00``; None for ``infinite``."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:  # infinite, UNLIMITED, n/a
        return None
    days, first, second, third = match.groups()
    if third is not None:  # [days-]hours:minutes:seconds
        seconds = int(first) * 3600 + int(second) * 60 + int(third)
    elif second is not None:  # [days-]hours:minutes:00 with a day, else minutes:seconds
        seconds = int(first) * 3600 + int(second) * 60 if days else int(first) * 60 + int(second)
    else:  # [days-]hours, else minutes
        seconds = int(first) * 3600 if days else int(first) * 60
    seconds += int(days or 0) * 86400
    return -(-seconds // 60)


def _number(text: str) -> int:
    """``22900``; ``4096+`` (nodes of a line differing) → 4096; anything else 0."""
    digits = re.match(r"\d+", text)
    return int(digits.group()) if digits else 0
