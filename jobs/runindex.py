"""The runs root's index of ended runs: ``<runs root>/ended-runs.jsonl``, so that a listing reads one file and
the live runs' records instead of every record (a lab's sweeps pass 10,000 runs within months).

One JSON array per line, appended::

    ["ended", DIR, GEN, RUN_ID, NAME, STATE, EXECUTOR, CREATED_AT, ENDED_AT, {STEP: STATE, …},
     PROGRESS, NODES, GPUS, IMAGES_PER_S, BEST_TOP1]
    ["reopened", DIR, GEN]

(RUN_ID, the record's, is null where it is DIR: always, but for a run directory copied under another name.)

DIR is the run directory's name, GEN the record's generation (``jobs.runsummary.generation``: its attempts
over every step, which every resume raises). An ``ended`` line holds what ``clusterdeck ls --json`` lists of
the run, read from a record that says a final state; a ``reopened`` line says that a resume made the run of
that generation live again. Arrays rather than objects: for 100,000 runs, objects were 37 MB against 20 and
took 0.65 s against 0.39 to parse (measured while this was written), and the parse is the largest part of a
listing. A newer clusterdeck adds kinds of lines rather than changing these: a line of a kind this version
does not know is passed over (a rebuild leaves it out, and the newer clusterdeck writes it again).

Who writes: ``ended`` lines come from whoever records a run's final state in its ``run.json``
(``jobs.status``), and from a listing that reads a record whose final state the index lacks (a run that
ended before the index existed, a line lost); ``reopened`` lines from ``resume``, before it resubmits.

What a reader makes of it (``RunsIndex``): for each run directory, the ``ended`` line of the highest
generation (the last of equals) stands for the run unless a ``reopened`` line has a higher generation, in
which case the run is live again and its record is read. The order of the lines does not matter, so a late
append of a stale line (a listing that read the record just before a resume) changes nothing, and
duplicates are harmless.

There is no lock (none works on NFS); what is guaranteed instead:

- **No live run is listed as ended**, as long as runs are resumed by this clusterdeck or a later one: a
  resume appends its ``reopened`` line and reads it back before it resubmits anything (``reopen``), and
  that line outranks every ``ended`` line of the generations before. A run directory that is gone is not
  listed, whatever the index says. What the index does not see: an ended run's files edited or damaged by
  hand afterwards (``show`` still reads and names them), and a resume by a clusterdeck from before the index.
- **Appends** are one ``write()`` of a line under ``LINE_MAX`` (< 4 KiB) with ``O_APPEND``: on a local
  filesystem concurrent appends neither interleave nor overwrite each other. NFS emulates ``O_APPEND`` and
  two clients appending at the same moment can overwrite one another's line (open(2)): a lost ``ended``
  line costs speed only (the record is read, and the line appended again), a lost ``reopened`` line is
  what the read-back catches, up to the moment it returns.
- **A torn line** (a writer that died mid-write, or one still writing) at the end of the file is not read;
  an append after it starts on a line of its own. A line that does not parse elsewhere is passed over and
  makes the index damaged: the next listing rebuilds it.
- **A rebuild** (``rebuild``: the index missing or damaged, or mostly obsolete lines) writes a whole new
  file and renames it into place, so a reader sees the old file or the new one. Lines appended to the old
  file after the rebuilder read it are copied into the new one after the rename; an append made after that
  copy by a writer that had opened the old file earlier is lost (an ``ended`` line: speed only). A
  rebuilder that finds the file is no longer the one it read (another rebuilt it, or created it) appends
  its lines instead of replacing that file.

Kept as our own code rather than a library: the format is a few dozen lines of ``json``, and the
database libraries that index files are what the run directory's design rules out on NFS (locking).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic_core

from clusterdeck.jobs import atomic
from clusterdeck.jobs.errors import UserError

INDEX_NAME = "ended-runs.jsonl"
LINE_MAX = 4000
"""Longer lines (a run named with thousands of characters) are not written: such a run's record is read."""
ENDED, REOPENED, ELSEWHERE = "ended", "reopened", "elsewhere"
ENDED_FIELDS = 15
ENTRY_KEYS = (
    "run_id", "name", "state", "executor", "created_at", "ended_at", "steps",
    "progress", "nodes", "gpus", "images_per_s", "best_top1",
)  # fmt: skip
"""The fields of a listing entry an ``ended`` line holds, in its order after DIR and GEN."""
COMPACT_MIN = 1000
"""A rebuild drops obsolete lines once there are more of them than this, and more than lines kept."""
READ_CHUNK = 1 << 22


def index_path(root: Path) -> Path:
    return root / INDEX_NAME


def run_directories(root: Path) -> list[str]:
    """Names of the runs root's directories, sorted (run ids sort by time): those that may be runs."""
    if not root.is_dir():
        return []
    try:
        with os.scandir(root) as entries:
            names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    except OSError as exc:
        raise UserError(f"{root}: cannot list the runs root ({exc.strerror or exc})") from None
    names.sort()
    return names


def ended_line(directory: str, generation: int, entry: dict[str, Any]) -> bytes | None:
    """The ``ended`` line of a run as listed (``entry``: ``ENTRY_KEYS``); None when it would be too long."""
    fields = [ENDED, directory, generation, *(entry[k] for k in ENTRY_KEYS)]
    if fields[3] == directory:
        fields[3] = None  # the usual case, said once
    line = json.dumps(fields, separators=(",", ":")).encode() + b"\n"
    return line if len(line) <= LINE_MAX else None


def reopened_line(directory: str, generation: int) -> bytes:
    return json.dumps([REOPENED, directory, generation], separators=(",", ":")).encode() + b"\n"


def elsewhere_line(run_id: str, name: str, path: str) -> bytes | None:
    """``["elsewhere", RUN_ID, NAME, PATH]``: a run this root's user submitted under another runs root (a spec's
    ``cluster.runs_root``), so that ``logs RUN`` finds it from here (``jobs.runs.resolve_run``)."""
    line = json.dumps([ELSEWHERE, run_id, name, path], separators=(",", ":")).encode() + b"\n"
    return line if len(line) <= LINE_MAX else None


_NUMBER_OR_NONE = (float, int, type(None))


@dataclass
class RunsIndex:
    """What one runs root's index says, read incrementally: ``refresh`` reads only the bytes appended since the
    last one (the app refreshes it every few seconds), or the whole file when it was replaced."""

    root: Path
    ended: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    """By run directory: (generation, listing entry) of its ``ended`` line of the highest generation. The entry
    is the same object while that line stands (the app tells an unchanged row by it)."""
    reopened: dict[str, int] = field(default_factory=dict)
    """By run directory: the highest generation a ``reopened`` line gave it."""
    elsewhere: dict[str, tuple[str, str]] = field(default_factory=dict)
    """By run id: (name, run directory) of a run submitted from here under another runs root."""
    missing: bool = True
    """There is no index file (or none that can be read): every record is read."""
    unreadable: str = ""
    """Why the file cannot be read (not a missing file): nothing is written over it."""
    bad: int = 0
    """Complete lines that are not index lines: the file is damaged and the next listing rebuilds it."""
    lines: int = 0
    """Index lines read, obsolete ones included (duplicates, older generations)."""
    torn: bool = False
    """The file ends inside a line: a write in progress or a writer that died. An append starts a new line."""
    offset: int = 0
    """Where the next ``refresh`` reads from: the end of the last complete line."""
    file_id: tuple[int, int] | None = None
    """(device, inode) of the file read: a rebuild replaces it with another."""

    def __post_init__(self) -> None:
        self._prefix = str(self.root / "x")[:-1]  # a run's path as ``root / name`` writes it, without a Path each

    def refresh(self) -> None:
        """Reads what was appended since the last refresh (everything, the first time or after a rebuild)."""
        try:
            fd = os.open(index_path(self.root), os.O_RDONLY)
        except FileNotFoundError:
            self._reset(None)
            return
        except OSError as exc:
            self._reset(None)
            self.missing, self.unreadable = False, exc.strerror or str(exc)
            return
        try:
            st = os.fstat(fd)
            file_id = (st.st_dev, st.st_ino)
            if file_id != self.file_id or st.st_size < self.offset:
                self._reset(file_id)
            self.missing = False
            data = _read_from(fd, self.offset)
        except OSError as exc:
            self._reset(None)
            self.missing, self.unreadable = False, exc.strerror or str(exc)
            return
        finally:
            os.close(fd)
        end = data.rfind(b"\n") + 1
        self.torn = end < len(data)
        self.offset += end
        self._take(data[:end])

    def _reset(self, file_id: tuple[int, int] | None) -> None:
        self.ended, self.reopened, self.elsewhere = {}, {}, {}
        self.missing, self.unreadable = file_id is None, ""
        self.bad = self.lines = self.offset = 0
        self.torn = False
        self.file_id = file_id

    def _take(self, data: bytes) -> None:
        with paused_gc():
            self._take_lines(data)

    def _take_lines(self, data: bytes) -> None:
        if not data.strip():
            return
        try:  # one parse of them all: a third of the time of json's parse per line, and pydantic's parser
            # (already loaded by the CLI) takes two thirds of the time of json's (measured on 100,000 lines)
            if b"\n\n" in data or data.startswith(b"\n"):  # an empty line (an append after a torn one): the
                data = b"\n".join(line for line in data.split(b"\n") if line) + b"\n"  # joined parse would fail
            parsed = pydantic_core.from_json(b"[" + data[:-1].replace(b"\n", b",") + b"]", cache_strings="keys")
            if len(parsed) != data.count(b"\n"):  # a damaged line that held a comma-separated list
                raise ValueError
        except ValueError:  # an empty line, one that does not parse: line by line, to pass over those alone
            parsed = [_parse(line) for line in data.split(b"\n") if line.strip()]
        ended, reopened, prefix = self.ended, self.reopened, self._prefix
        for f in parsed:
            if type(f) is not list or not f:
                self.bad += 1
            elif f[0] == ENDED and len(f) == ENDED_FIELDS:
                (_, directory, gen, run_id, name, state, executor, created, ended_at, steps, progress, nodes, gpus,
                 images_per_s, best) = f  # fmt: skip
                if not (  # the shape the CLI and the app need: a line that parses but is not one is refused
                    type(directory) is str
                    and type(gen) is int
                    and type(run_id) in (str, type(None))
                    and type(name) is str
                    and type(state) is str
                    and type(executor) is str
                    and type(created) in (float, int)
                    and type(ended_at) in _NUMBER_OR_NONE
                    and type(steps) is dict
                    and type(progress) in _NUMBER_OR_NONE
                    and type(nodes) is int
                    and type(gpus) is int
                    and type(images_per_s) in _NUMBER_OR_NONE
                    and type(best) in _NUMBER_OR_NONE
                ):
                    self.bad += 1
                    continue
                self.lines += 1
                held = ended.get(directory)
                if held is not None and gen < held[0]:
                    continue
                ended[directory] = (
                    gen,
                    {
                        "run_id": run_id if run_id is not None else directory,
                        "name": name,
                        "state": state,
                        "executor": executor,
                        "created_at": created,
                        "ended_at": ended_at,
                        "path": prefix + directory,
                        "steps": steps,
                        "progress": progress,
                        "nodes": nodes,
                        "gpus": gpus,
                        "images_per_s": images_per_s,
                        "best_top1": best,
                        "queue": None,  # an ended run waits in no queue
                    },
                )
            elif f[0] == REOPENED and len(f) == 3 and type(f[1]) is str and type(f[2]) is int:
                self.lines += 1
                if f[2] > reopened.get(f[1], -1):
                    reopened[f[1]] = f[2]
            elif f[0] == ELSEWHERE and len(f) == 4 and all(type(x) is str for x in f[1:]):
                self.lines += 1
                self.elsewhere[f[1]] = (f[2], f[3])
            elif f[0] in (ENDED, REOPENED, ELSEWHERE) or type(f[0]) is not str:
                self.bad += 1  # a known kind of the wrong shape; a kind we do not know is a newer clusterdeck's

    def covered(self, directory: str) -> dict[str, Any] | None:
        """The listing entry of the ``ended`` line that stands for the run, or None: not ended as far as the
        index knows, or reopened since (its record must be read)."""
        held = self.ended.get(directory)
        if held is None or held[0] < self.reopened.get(directory, -1):
            return None
        return held[1]

    def kept_lines(self, directories: Iterable[str] | None = None) -> list[bytes]:
        """The lines a rebuild keeps: each run's standing ``ended`` line and a ``reopened`` line that outranks
        it; only the runs in ``directories`` (those still in the runs root) when it is given."""
        wanted = set(self.ended) | set(self.reopened) if directories is None else set(directories)
        kept = []
        for directory in sorted(wanted):
            held = self.ended.get(directory)
            line = ended_line(directory, *held) if held is not None else None
            if line is not None:
                kept.append(line)
            gen = self.reopened.get(directory)
            if gen is not None and (held is None or gen > held[0]):
                kept.append(reopened_line(directory, gen))
        for run_id, (name, path) in sorted(self.elsewhere.items()):
            line = elsewhere_line(run_id, name, path)
            if line is not None and Path(path, "run.json").is_file():  # a pointer to a run deleted since is dropped
                kept.append(line)
        return kept


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection in the block: it makes no cycles, and building 100,000 entries otherwise
    sets off collections that scan them all, again and again (half the time of reading the index, measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _read_from(fd: int, offset: int) -> bytes:
    parts = []
    while chunk := os.pread(fd, READ_CHUNK, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def append(root: Path, lines: Iterable[bytes]) -> tuple[tuple[int, int], int]:
    """Appends each line with one ``write()``; when the file ends inside a line (torn), a newline goes first,
    so that the torn piece stays a line of its own. The file is created, readable as the umask allows
    (``atomic.FILE_MODE``), when there is none. Returns its (device, inode) and its end after the last write."""
    fd = os.open(index_path(root), os.O_RDWR | os.O_APPEND | os.O_CREAT, atomic.FILE_MODE)
    try:
        st = os.fstat(fd)
        first = b"\n" if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n" else b""
        for line in lines:
            data = first + line
            first = b""
            if os.write(fd, data) != len(data):  # a full disk: the rest would land torn
                raise OSError(f"{index_path(root)}: short write")
        return (st.st_dev, st.st_ino), os.lseek(fd, 0, os.SEEK_CUR)
    finally:
        os.close(fd)


def reopen(root: Path, directory: str, generation: int, tries: int = 3) -> None:
    """Records that the run in ``directory`` is live again from ``generation`` on: appended, then read back
    from the file, again if it is not there whole (another NFS client's append overwrote it); when the index
    cannot be appended to (a teammate's file), a rebuild replaces it with one that has the line. Raises
    ``OSError`` when neither works: the caller must not resubmit then."""
    line = reopened_line(directory, generation)
    for _ in range(tries):
        try:
            file_id, end = append(root, [line])
        except PermissionError:
            seen = RunsIndex(root)
            seen.refresh()
            if seen.unreadable or not rebuild(root, [*seen.kept_lines(), line], seen):
                raise
            return
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(index_path(root), os.O_RDONLY)
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == file_id and os.pread(fd, len(line), end - len(line)) == line:
                    return
            finally:
                os.close(fd)
    raise OSError(f"{index_path(root)}: the line appended was not found there when read back")


def rebuild(root: Path, lines: list[bytes], seen: RunsIndex) -> bool:
    """Replaces the index with ``lines``, by rename, when it is still the file ``seen`` read (or there still is
    none); then copies over the complete lines appended to the old file since ``seen`` read it. False, and
    nothing written, when the file changed hands meanwhile: the caller appends instead."""
    path = index_path(root)
    try:
        old = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        old = None
    try:
        if old is not None:
            st = os.fstat(old)
            if (st.st_dev, st.st_ino) != seen.file_id:
                return False
        elif seen.file_id is not None:
            return False
        fd, tmp = atomic.create_temp(path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
            if old is None:
                try:
                    os.link(tmp, path)  # never over a file someone created meanwhile
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        atomic.fsync_dir(root)
        if old is not None:
            late = _read_from(old, seen.offset)
            late = late[: late.rfind(b"\n") + 1]  # a line still being written is its writer's to finish
            copied = [line + b"\n" for line in late.split(b"\n") if type(_parse(line)) is list]
            if copied:
                append(root, copied)
        return True
    finally:
        if old is not None:
            os.close(old)
