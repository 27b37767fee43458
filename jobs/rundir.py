"""The run directory: the contract between the jobs that write a run and the viewers that read it.

Every path of a run is named here and nowhere else::

    <runs_root>/<run_id>/
        run.json                    the run record (RunRecord): spec summary, steps, attempts, job ids;
                                    written only by the submitting side, always by atomic rename
        spec.json                   the resolved, validated spec the run was submitted with
        status/<step>.<attempt>.<part>.json
                                    one file per job part (``task-3``, ``merge``, ``main``), written only by
                                    that part, by atomic rename: state, node, times, exit code, error
                                    (in a job of several tasks, by its rank 0)
        status/<step>.<attempt>.<part>.rank<k>.json
                                    rank k's own status, written only when rank k (k > 0) fails: its peers
                                    fail after it (a collective with it breaks) and write theirs later; the
                                    part's status is the first failure of its latest start (``load_statuses``)
        submitit/                   submitit's folder: pickled calls, ``<jobid>_<task>_log.out|err``
        metrics.jsonl               appended JSON lines (one object per line: time, kind, node, rank, attempt,
                                    values), from the first node only: what the step did (train, epoch, stage, …)
        telemetry/<jobid>_<rank>.jsonl
                                    the same kind of lines, ``system`` and ``gpu`` samples, one file per task:
                                    appends from several NFS clients to one file can overwrite each other
        checkpoints/last.pt         the train step's latest state (model, optimizer, scheduler, scaler, epoch,
        checkpoints/best.pt         step, RNG states, spec); best.pt is the one with the best val top-1
        tensorboard/                TensorBoard event files of the train step (when tensorboard is installed)

The shard set itself goes where the spec's ``shard.output`` says (usually scratch),
not into the run directory.

Every file and directory here, in a shard set and in a stage cache gets the mode a plain ``open()`` or
``mkdir()`` gives under the submitting user's umask (SLURM carries it to the jobs): 0644/0755 under 022,
0664/0775 under 002, so a group that shares a runs root or a shard set can read it (``jobs.atomic``).

Readers never write to a run they only look at, beyond caching a finished run's final state
in ``run.json`` (and its line in the runs root's index of ended runs, ``jobs.runindex``). A run
whose ``run.json``, ``spec.json`` or a status file cannot be read as what it should be is
damaged (``jobs.damage``): listings show it as ``DAMAGED`` with the file and what is wrong,
every other command refuses it naming the file, and nothing of it is rewritten. Lines of
``metrics.jsonl`` and telemetry files that are not records are skipped
and counted (a writer cut off mid-line leaves one); ``clusterdeck metrics`` names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def record(self) -> Path:
        return self.root / "run.json"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def status_dir(self) -> Path:
        return self.root / "status"

    def status(self, step: str, attempt: int, part: str, rank: int = 0) -> Path:
        return self.status_dir / (
            f"{step}.{attempt}.{part}.json" if rank == 0 else f"{step}.{attempt}.{part}.rank{rank}.json"
        )

    @property
    def submitit(self) -> Path:
        return self.root / "submitit"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def telemetry_dir(self) -> Path:
        return self.root / "telemetry"

    def telemetry(self, job_id: str, rank: int) -> Path:
        return self.telemetry_dir / f"{job_id}_{rank}.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @staticmethod
    def log_glob(job_id: str, stream: str) -> str:
        """Names, in ``submitit``, of a job's logs: ``<jobid>_<rank>_log.<out|err>`` (array tasks: ``123_4``)."""
        return f"{job_id}_*_log.{stream}"
