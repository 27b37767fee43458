"""Following a whole run: every job's log files (attempts, requeues, array tasks, ranks) and every metrics file.

Files are found afresh on each poll (a requeue or resume adds jobs), through the run record
and a listing of the submitit folder, and each is followed by its own ``FileTail``. One poll
reads at most ``budget`` bytes over all files, going on next time from the file where it
stopped, and at most ``MAX_OPEN`` files stay open (the least recently active are closed and
reopened when read again), so a 1,000-task array costs neither memory nor file descriptors.
Lines come file by file; metrics records of one poll are merged by time, each file's own
order kept.
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass
from typing import Any

from clusterdeck.jobs.records import RunRecord
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.tail.access import FileAccess, LocalFiles, read_all
from clusterdeck.jobs.tail.filetail import CHUNK, FileTail
from clusterdeck.jobs.tail.records import envelope

MAX_OPEN = 64
_LOG_NAME = re.compile(r"^(?P<job>.+)_(?P<rank>\d+)_log\.(?P<stream>out|err)$")


@dataclass(frozen=True)
class LogFile:
    path: str
    job_id: str
    """The scheduler's id of the job (``123``), or of the array task (``123_4``)."""
    rank: int
    stream: str
    """``out`` or ``err``."""


def log_files(access: FileAccess, paths: RunPaths, *, err: bool = False, rank: int | None = None) -> list[LogFile]:
    """Every log file of the run: jobs in submission order (all attempts of every step), then tasks and ranks."""
    record = RunRecord.model_validate_json(read_all(access, str(paths.record)))
    stream = "err" if err else "out"
    found: list[LogFile] = []
    for job_id in dict.fromkeys(record.job_ids()):
        mine = []
        for path in access.list(str(paths.submitit), paths.log_glob(job_id, stream)):
            m = _LOG_NAME.match(path.rsplit("/", 1)[-1])
            if m and (rank is None or int(m["rank"]) == rank):
                mine.append(LogFile(path, m["job"], int(m["rank"]), stream))
        found += sorted(mine, key=lambda f: ([int(x) for x in f.job_id.split("_")[1:]], f.rank))
    return found


class _Files:
    """The tails of a changing list of files, read in turn within one budget per poll."""

    def __init__(self, access: FileAccess, budget: int) -> None:
        self.access = access
        self.budget = budget
        self.tails: dict[str, FileTail] = {}
        self.more = False
        self._start = 0

    def poll(self, paths: list[str], final: bool) -> list[tuple[int, list[str]]]:
        """(index in ``paths``, new lines) for each file with something new, in the order read."""
        out: list[tuple[int, list[str]]] = []
        left, self.more = self.budget, False
        n = len(paths)
        for k in range(n):
            i = (self._start + k) % n
            tail = self.tails.get(paths[i])
            if tail is None:
                tail = self.tails[paths[i]] = FileTail(self.access, paths[i])
            before = tail.offset
            lines = tail.poll(final, budget=min(left, 4 * CHUNK))
            left -= max(tail.offset - before, 0)
            self.more |= tail.more
            if lines:
                out.append((i, lines))
            if left <= 0 and k < n - 1:  # the rest next poll, from this file on if it has more
                self._start, self.more = (i if tail.more else (i + 1) % n), True
                break
        self._close_idle()
        return out

    def _close_idle(self) -> None:
        opened = [t for t in self.tails.values() if t.is_open]
        for tail in sorted(opened, key=lambda t: t.active)[: max(len(opened) - MAX_OPEN, 0)]:
            tail.close()

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()


class RunLogs:
    """New lines of every log file of a run, file by file."""

    def __init__(
        self,
        paths: RunPaths,
        access: FileAccess | None = None,
        *,
        err: bool = False,
        rank: int | None = None,
        budget: int = 8 * CHUNK,
    ) -> None:
        self.paths = paths
        self.access = access or LocalFiles()
        self.err = err
        self.rank = rank
        self.files = _Files(self.access, budget)

    @property
    def more(self) -> bool:
        return self.files.more

    def poll(self, final: bool = False) -> list[tuple[LogFile, str]]:
        files = log_files(self.access, self.paths, err=self.err, rank=self.rank)
        found = self.files.poll([f.path for f in files], final)
        return [(files[i], line) for i, lines in found for line in lines]

    def close(self) -> None:
        self.files.close()


class RunMetrics:
    """New records of ``metrics.jsonl`` and every telemetry file; ``kinds`` filters them."""

    def __init__(
        self,
        paths: RunPaths,
        access: FileAccess | None = None,
        *,
        kinds: set[str] | None = None,
        budget: int = 8 * CHUNK,
    ) -> None:
        self.paths = paths
        self.access = access or LocalFiles()
        self.kinds = kinds
        self.files = _Files(self.access, budget)
        self.skipped = 0
        """Lines that were not records (none, unless a writer was cut off or something else wrote to the files)."""
        self.bad: dict[str, tuple[int, int]] = {}
        """Per file with lines that are not records: (how many, the line number of the first)."""
        self._lines: dict[str, int] = {}

    @property
    def more(self) -> bool:
        return self.files.more

    def poll(self, final: bool = False) -> list[dict[str, Any]]:
        paths = [str(self.paths.metrics), *self.access.list(str(self.paths.telemetry_dir), "*.jsonl")]
        batches = [self._parse(paths[i], lines) for i, lines in self.files.poll(paths, final)]
        return list(heapq.merge(*batches, key=lambda r: r.get("time", 0.0)))

    def _parse(self, path: str, lines: list[str]) -> list[dict[str, Any]]:
        records = []
        seen = self._lines.get(path, 0)
        self._lines[path] = seen + len(lines)
        for number, line in enumerate(lines, start=seen + 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if envelope(record) is None:  # cut off, or another program's line: named once, at the end
                self.skipped += 1
                count, first = self.bad.get(path, (0, number))
                self.bad[path] = (count + 1, first)
                continue
            if self.kinds is None or record.get("kind") in self.kinds:
                records.append(record)
        return records

    def close(self) -> None:
        self.files.close()
