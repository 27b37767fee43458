"""The runs root: one directory per run, ids that sort by time, addressing by unique prefix.

Beside the runs, the root holds the index of its ended runs (``jobs.runindex``, ``ended-runs.jsonl``).
The records' modules load only where a record is read: ``clusterdeck ls`` of ended runs reads none.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clusterdeck.jobs.errors import RunNotFound, UserError
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runindex import run_directories

if TYPE_CHECKING:
    from clusterdeck.jobs.records import PartStatus, RunRecord

ID_TIME_FORMAT = "%Y%m%d-%H%M%S"


def default_runs_root() -> Path:
    """$CLUSTERDECK_HOME/runs, else the user's ``[defaults] runs_root`` (``jobs.userconfig``), else
    ~/.clusterdeck/runs."""
    home = os.environ.get("CLUSTERDECK_HOME")
    if home:
        return Path(home).expanduser() / "runs"
    from clusterdeck.jobs.envvars import expand_vars
    from clusterdeck.jobs.userconfig import config_path, load_defaults

    configured = load_defaults().runs_root
    if configured:
        try:
            path = Path(expand_vars(configured))
        except ValueError as exc:
            raise UserError(f"{config_path()}: defaults.runs_root: {exc}") from None
        if not path.is_absolute():
            raise UserError(f"{config_path()}: defaults.runs_root: {configured!r} is relative; give an absolute path")
        return path
    return Path.home() / ".clusterdeck" / "runs"


def new_run_id(at: float | None = None) -> str:
    """``20261121-221530-3fa9c1``: sorts by creation time; the random tail keeps concurrent ids apart."""
    stamp = time.strftime(ID_TIME_FORMAT, time.localtime(at if at is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(3)}"


def create_run_dir(root: Path) -> RunPaths:
    """A new, empty run directory; ``mkdir`` is atomic, so two submitters never share one."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{root}: cannot create runs root ({exc.strerror})") from None
    for _ in range(100):
        path = root / new_run_id()
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return RunPaths(path)
    raise RuntimeError(f"could not allocate a run id under {root}")


def list_runs(root: Path) -> list[RunPaths]:
    """Runs with a record, oldest first."""
    return [RunPaths(root / n) for n in run_directories(root) if _has_record(root / n)]


def _has_record(path: Path) -> bool:
    """A run directory has its ``run.json``; one that cannot be looked into is listed too, and named as damaged."""
    try:
        return (path / "run.json").exists()
    except OSError:
        return True


def resolve_run(root: Path, address: str) -> RunPaths:
    """A run by id, unique id prefix, or unique name; a ``UserError`` naming the file when it is damaged."""
    return whole(_find_run(root, address))


def whole(run: RunPaths) -> RunPaths:
    """``run``, once its record, spec and status files have been read: a ``UserError`` naming the first damaged
    one. Nothing is written: a damaged run stays as it is until the user moves or mends it."""
    read_whole(run)
    return run


def read_whole(run: RunPaths) -> tuple[RunRecord, dict[tuple[str, int, str], PartStatus]]:
    """``whole``'s check, returning the record and part statuses it read (a view of the run needs both)."""
    from clusterdeck.jobs.damage import DamagedRecord
    from clusterdeck.jobs.records import check_run

    try:
        return check_run(run)
    except FileNotFoundError:
        raise RunNotFound(f"{run.root}: not a run any more (its run.json is gone)") from None
    except DamagedRecord as exc:
        raise UserError(f"{exc}: run {run.run_id} is damaged (it was left as it is)") from None


def _find_run(root: Path, address: str) -> RunPaths:
    if address and not address.startswith(".") and "/" not in address and "\0" not in address:
        try:
            found = (root / address / "run.json").is_file()
        except OSError:  # a name too long, say: no run, as the listing below says it
            found = False
        if found:
            return RunPaths(root / address)  # a whole id: found without listing a root of 100,000 runs
    runs = list_runs(root)
    exact = [r for r in runs if r.run_id == address]
    if exact:
        return exact[0]
    by_prefix = [r for r in runs if r.run_id.startswith(address)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        shown = ", ".join(r.run_id for r in by_prefix[:5])
        raise RunNotFound(f"run '{address}' is ambiguous under {root}: {shown}{' …' if len(by_prefix) > 5 else ''}")
    by_name = [r for r in runs if _name_of(r) == address]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise RunNotFound(f"run name '{address}' is used by {len(by_name)} runs under {root}; give an id")
    stray = root / address
    if address not in ("", ".", "..") and "/" not in address and stray.is_dir():
        raise RunNotFound(f"{stray}: not a run (it has no run.json); no run '{address}' under {root}")
    elsewhere = _elsewhere(root, address)
    if elsewhere is not None:
        return elsewhere
    raise RunNotFound(f"no run '{address}' under {root}")


def _elsewhere(root: Path, address: str) -> RunPaths | None:
    """A run submitted from ``root``'s user under another runs root (a spec's ``cluster.runs_root``), by the pointer
    submit left in ``root``'s index: by id, unique id prefix or unique name."""
    from clusterdeck.jobs.runindex import RunsIndex

    index = RunsIndex(root)
    index.refresh()
    pointers = index.elsewhere
    found = [i for i in pointers if i == address] or [i for i in pointers if i.startswith(address)]
    found = found or [i for i, (name, _) in pointers.items() if name == address]
    if len(found) != 1:
        return None
    run = RunPaths(Path(pointers[found[0]][1]))
    return run if (run.root / "run.json").is_file() else None


def _name_of(run: RunPaths) -> str | None:
    from clusterdeck.jobs.records import load_record

    try:
        return load_record(run).name
    except (OSError, ValueError):
        return None
