"""Reading a run's logs incrementally: each file from a byte offset, whole lines only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from jobs.records import load_record
from jobs.rundir import RunPaths


def log_files(paths: RunPaths, err: bool = False) -> list[Path]:
    """Every job's log, in submission order (all attempts of every step)."""
    record = load_record(paths)
    ordered: list[str] = []
    for step in record.steps:
        for attempt in step.attempts:
            for job in attempt.jobs:
                if job.job_id not in ordered:
                    ordered.append(job.job_id)
    return paths.log_files(ordered, err)


class LogFollower:
    """Yields lines that were completed since the last call; a partial last line waits for its newline."""

    def __init__(self, paths: RunPaths, err: bool = False) -> None:
        self.paths = paths
        self.err = err
        self.offsets: dict[Path, int] = {}

    def poll(self, final: bool = False) -> Iterator[tuple[Path, str]]:
        for file in log_files(self.paths, self.err):
            offset = self.offsets.get(file, 0)
            try:
                with open(file, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = len(data) if final else data.rfind(b"\n") + 1
            for line in data[:end].decode(errors="replace").splitlines():
                yield file, line
            self.offsets[file] = offset + end
