"""One line per run, as the runs list shows it: state, progress, size, speed and best accuracy.

An ended run's line comes from the runs root's index of ended runs (``jobs.runindex``): one file, read
from where the last listing stopped. The other runs (live, or ended but not yet in the index) come from
their records and the jobs' status files (``jobs.status``, one scheduler query for all of them) and their
specs (read once per run: a spec never changes); what the index lacks of an ended run is added to it.
The modules that read records load only when there is a run to read (a listing of ended runs needs none).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterdeck.jobs import runindex
from clusterdeck.jobs.runindex import RunsIndex

if TYPE_CHECKING:
    from clusterdeck.jobs.dispatch.base import QueueWait
    from clusterdeck.jobs.status import RunView


@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    state: str
    steps: str
    """``shard:COMPLETED train:RUNNING``."""
    progress: float | None
    """0..1 of the step now running (train steps, shard files), None when nothing tells."""
    created_at: float
    ended_at: float | None
    nodes: int
    gpus: int
    images_per_s: float | None
    best_top1: float | None
    path: str
    queue: QueueWait | None = None
    """While the run waits in the scheduler's queue: why, and when it may start (``RunView.queue``)."""

    @property
    def elapsed_s(self) -> float:
        return (self.ended_at or time.time()) - self.created_at

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> RunRow:
        """The row of one ``Overview.listing`` entry (a remote ``clusterdeck ls --json``)."""
        return cls(
            run_id=entry["run_id"],
            name=entry["name"],
            state=entry["state"],
            steps=entry.get("damaged") or " ".join(f"{step}:{state}" for step, state in entry["steps"].items()),
            progress=entry.get("progress"),
            created_at=entry["created_at"],
            ended_at=entry.get("ended_at"),
            nodes=entry.get("nodes", 0),
            gpus=entry.get("gpus", 0),
            images_per_s=entry.get("images_per_s"),
            best_top1=entry.get("best_top1"),
            path=entry["path"],
            queue=_queue_of(entry.get("queue")),
        )


class Overview:
    """Rows of every run under a runs root; keeps what it read: the index up to where it stopped, each run's
    spec and each finished run's figures."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = RunsIndex(root)
        self._sizes: dict[str, tuple[int, int]] = {}
        self._final: dict[str, tuple[float | None, float | None, float | None]] = {}

    def listing(self) -> list[dict[str, Any]]:
        """``clusterdeck ls --json``'s runs, oldest first: each run's summary and its row's figures, read by
        ``RunRow.from_entry`` (which ignores fields it does not know: a newer login node's).

        A run whose record, spec or a status file is damaged is listed with state ``DAMAGED`` and a
        ``damaged`` reason that names the file; nothing of it is rewritten, and it is not indexed.
        """
        index = self.index
        index.refresh()
        names = runindex.run_directories(self.root)
        listed: list[dict[str, Any] | str] = []
        unread = []
        in_index = 0
        ended, reopened = index.ended, index.reopened
        for name in names:  # ``index.covered``, written out: this loop is most of a listing of 100,000 runs
            held = ended.get(name)
            if held is not None:
                in_index += 1
                if not reopened or held[0] >= reopened.get(name, -1):
                    listed.append(held[1])
                    continue
            unread.append(name)
            listed.append(name)
        read, new_lines = self._read(unread) if unread else ({}, [])
        self._index(names, new_lines, len(ended) - in_index)
        if not unread:
            return listed  # type: ignore[return-value] # every one an entry
        return [e if isinstance(e, dict) else read[e] for e in listed if isinstance(e, dict) or e in read]

    def _read(self, names: list[str]) -> tuple[dict[str, dict[str, Any]], list[bytes]]:
        """Entries of the runs the index does not stand for, from their records (a directory without
        ``run.json`` is no run: left out); and the index lines of those whose record says a final state."""
        from clusterdeck.jobs.damage import DamagedRecord
        from clusterdeck.jobs.rundir import RunPaths
        from clusterdeck.jobs.runsummary import generation
        from clusterdeck.jobs.status import damaged_view, load_records, views_of

        loaded = load_records([RunPaths(self.root / n) for n in names])
        entries, lines = {}, []
        for (paths, record), view in zip(loaded, views_of(loaded), strict=True):
            try:
                row = self.row(view)
            except DamagedRecord as exc:  # its spec, or a status file of a finished run, read here
                view = damaged_view(paths, exc)
                row = self.row(view)
            entry = {
                "run_id": view.run_id,
                "name": view.name,
                "state": view.state,
                "executor": view.executor,
                "created_at": view.created_at,
                "ended_at": view.ended_at,
                "path": view.path,
                "steps": {s.name: s.state for s in view.steps},
                "progress": row.progress,
                "nodes": row.nodes,
                "gpus": row.gpus,
                "images_per_s": row.images_per_s,
                "best_top1": row.best_top1,
                "queue": asdict(row.queue) if row.queue else None,
            }
            if view.damaged:
                entry["damaged"] = view.damaged
            elif not isinstance(record, DamagedRecord) and record.final is not None:
                # ended before this listing (one that ended now was indexed as its final state was cached)
                gen = generation(record)
                if gen >= self.index.reopened.get(paths.run_id, -1):  # else a resume is under way, or failed
                    line = runindex.ended_line(paths.run_id, gen, entry)
                    if line is not None:
                        lines.append(line)
            entries[paths.run_id] = entry
        return entries, lines

    def _index(self, names: list[str], lines: list[bytes], gone: int) -> None:
        """Adds ``lines`` to the index; rebuilds it instead when it is missing, damaged, or mostly obsolete
        lines (``gone``: runs whose directory is no more). Nothing when the root cannot be written to: the
        listing was right all the same, the next one reads those records again."""
        index = self.index
        if index.unreadable or not os.access(self.root, os.W_OK):
            return
        kept = len(index.ended) + len(index.reopened) + len(index.elsewhere)
        obsolete = index.lines - kept + gone
        rebuild = (index.missing and lines) or index.bad or obsolete > max(runindex.COMPACT_MIN, kept)
        with contextlib.suppress(OSError):
            if rebuild and runindex.rebuild(self.root, [*index.kept_lines(names), *lines], index):
                return
            if lines:
                runindex.append(self.root, lines)

    def row(self, view: RunView) -> RunRow:
        if view.damaged:
            # the reason stands where the steps would: the runs list shows it without a column of its own
            return RunRow(
                view.run_id, "", "DAMAGED", view.damaged, None, view.created_at, None, 0, 0, None, None, view.path
            )
        nodes, gpus = self._size(view)
        progress, images_per_s, best = self._figures(view)
        return RunRow(
            run_id=view.run_id,
            name=view.name,
            state=view.state,
            steps=" ".join(f"{s.name}:{s.state}" for s in view.steps),
            progress=progress,
            created_at=view.created_at,
            ended_at=view.ended_at,
            nodes=nodes,
            gpus=gpus,
            images_per_s=images_per_s,
            best_top1=best,
            path=view.path,
            queue=view.queue,
        )

    def _figures(self, view: RunView) -> tuple[float | None, float | None, float | None]:
        """(progress, images/s, best top-1) from the parts' last reports; a finished run's are read once."""
        from clusterdeck.jobs.records import load_statuses
        from clusterdeck.jobs.rundir import RunPaths
        from clusterdeck.jobs.runsummary import figures, last_reports

        if not view.ended:  # a resumed run is live again: its figures are read afresh, and again when it ends
            self._final.pop(view.run_id, None)
        elif view.run_id in self._final:
            return self._final[view.run_id]
        reports = [(s.state, p.progress) for s in view.steps for p in s.parts]  # the step's state, as it shows
        if view.ended and not reports:  # the record's cached final state has no parts: their status files
            reports = last_reports(load_statuses(RunPaths(Path(view.path))))
        found = figures(reports, view.state)
        if view.ended:
            self._final[view.run_id] = found
        return found

    def _size(self, view: RunView) -> tuple[int, int]:
        """(nodes, GPUs) of the biggest step, as the spec asks for them; ``DamagedRecord`` for a damaged spec."""
        from clusterdeck.jobs.records import read_spec_json
        from clusterdeck.jobs.rundir import RunPaths
        from clusterdeck.jobs.runsummary import size_of

        if view.run_id not in self._sizes:
            self._sizes[view.run_id] = size_of(read_spec_json(RunPaths(Path(view.path))))
        return self._sizes[view.run_id]


def _queue_of(data: dict[str, Any] | None) -> QueueWait | None:
    """A listing entry's ``queue`` as a ``QueueWait`` (only pending runs have one: the rest load nothing)."""
    if not data:
        return None
    from clusterdeck.jobs.status import queue_wait

    return queue_wait(data)
