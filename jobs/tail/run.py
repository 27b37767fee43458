"""Following a whole run: every job's log files (attempts, requeues, array tasks, ranks) and every metrics file.

Files are found afresh on each poll (a requeue or resume adds jobs), through the run record
and a listing of the submitit folder, and each is followed by its own ``FileTail``. Lines
come in file order; metrics records of several files are merged by time, each file's own
order kept.
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass
from typing import Any

from jobs.records import RunRecord
from jobs.rundir import RunPaths
from jobs.tail.access import FileAccess, LocalFiles
from jobs.tail.filetail import FileTail

_LOG_NAME = re.compile(r"^(?P<job>.+)_(?P<rank>\d+)_log\.(?P<stream>out|err)$")


@dataclass(frozen=True)
class LogFile:
    path: str
    job_id: str
    """The scheduler's id of the job (``123``), or of the array task (``123_4``)."""
    rank: int
    stream: str
    """``out`` or ``err``."""


def read_small(access: FileAccess, path: str, limit: int = 16 << 20) -> bytes:
    handle = access.open(path)
    try:
        return handle.read(limit)
    finally:
        handle.close()


def job_ids(access: FileAccess, paths: RunPaths) -> list[str]:
    """Every job of the run, in submission order (all attempts of every step)."""
    record = RunRecord.model_validate_json(read_small(access, str(paths.record)))
    ordered: list[str] = []
    for step in record.steps:
        for attempt in step.attempts:
            for job in attempt.jobs:
                if job.job_id not in ordered:
                    ordered.append(job.job_id)
    return ordered


def log_files(access: FileAccess, paths: RunPaths, *, err: bool = False, rank: int | None = None) -> list[LogFile]:
    stream = "err" if err else "out"
    found: list[LogFile] = []
    for job_id in job_ids(access, paths):
        mine = []
        for path in access.list(str(paths.submitit), paths.log_glob(job_id, stream)):
            m = _LOG_NAME.match(path.rsplit("/", 1)[-1])
            if m and (rank is None or int(m["rank"]) == rank):
                mine.append(LogFile(path, m["job"], int(m["rank"]), stream))
        found += sorted(mine, key=lambda f: ([int(x) for x in f.job_id.split("_")[1:]], f.rank))
    return found


class RunLogs:
    """New lines of every log file of a run, file by file."""

    def __init__(
        self, paths: RunPaths, access: FileAccess | None = None, *, err: bool = False, rank: int | None = None
    ) -> None:
        self.paths = paths
        self.access = access or LocalFiles()
        self.err = err
        self.rank = rank
        self.tails: dict[str, FileTail] = {}
        self.more = False

    def poll(self, final: bool = False) -> list[tuple[LogFile, str]]:
        out: list[tuple[LogFile, str]] = []
        self.more = False
        for file in log_files(self.access, self.paths, err=self.err, rank=self.rank):
            tail = self.tails.get(file.path)
            if tail is None:
                tail = self.tails[file.path] = FileTail(self.access, file.path)
            out += [(file, line) for line in tail.poll(final)]
            self.more |= tail.more
        return out

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()


class RunMetrics:
    """New records of ``metrics.jsonl`` and every telemetry file, merged by time; ``kinds`` filters them."""

    def __init__(self, paths: RunPaths, access: FileAccess | None = None, *, kinds: set[str] | None = None) -> None:
        self.paths = paths
        self.access = access or LocalFiles()
        self.kinds = kinds
        self.tails: dict[str, FileTail] = {}
        self.skipped = 0
        """Lines that were not JSON objects (none, unless something else wrote to the files)."""
        self.more = False

    def files(self) -> list[str]:
        return [str(self.paths.metrics), *self.access.list(str(self.paths.telemetry_dir), "*.jsonl")]

    def poll(self, final: bool = False) -> list[dict[str, Any]]:
        batches: list[list[dict[str, Any]]] = []
        self.more = False
        for path in self.files():
            tail = self.tails.get(path)
            if tail is None:
                tail = self.tails[path] = FileTail(self.access, path)
            batches.append(self._parse(tail.poll(final)))
            self.more |= tail.more
        return list(heapq.merge(*batches, key=lambda r: r.get("time", 0.0)))

    def _parse(self, lines: list[str]) -> list[dict[str, Any]]:
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                self.skipped += 1
                continue
            if self.kinds is None or record.get("kind") in self.kinds:
                records.append(record)
        return records

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()
