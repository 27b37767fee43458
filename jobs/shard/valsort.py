"""``clusterdeck val-sort``: a flat ILSVRC2012 validation set as ImageFolder class folders.

``DIR/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG`` are hard links to the originals, or copies where
linking is not possible (another filesystem, or a filesystem or policy that refuses links).
Nothing in the source or the destination is ever deleted or overwritten: every destination
that already exists is checked before the first link, and a re-run finds its own work "already there".
"""

from __future__ import annotations

import errno
import filecmp
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.sources import ValLabels, read_ground_truth, read_synsets

# Link refusals that a copy gets around: another filesystem, a link count at its limit, a filesystem
# without hard links, or a policy against linking files one does not own (fs.protected_hardlinks).
COPY_INSTEAD = {errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP}
SHOWN = 10  # conflicts listed in an error, skipped files kept for the JSON record


@dataclass
class ValSort:
    out: Path
    classes: int = 0
    linked: int = 0
    copied: int = 0
    already_there: int = 0
    skipped: int = 0
    first_skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def images(self) -> int:
        return self.linked + self.copied + self.already_there

    def skip(self, name: str, reason: str) -> None:
        self.skipped += 1
        if len(self.first_skipped) < SHOWN:
            self.first_skipped.append({"path": name, "reason": reason})

    def record(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "images": self.images,
            "classes": self.classes,
            "linked": self.linked,
            "copied": self.copied,
            "already_there": self.already_there,
            "skipped": self.skipped,
            "first_skipped": self.first_skipped,
        }


def summary(result: ValSort, shown: int = 3) -> str:
    line = (
        f"sorted {result.images} image{_s(result.images)} into {result.classes} class folder{_s(result.classes)} "
        f"under {result.out} ({result.linked} linked, {result.copied} copied, {result.already_there} already there)"
    )
    if result.skipped:
        line += f"; {_skipped(result, shown)}"
    return line


def _skipped(result: ValSort, shown: int) -> str:
    first = "; ".join(f"{s['path']}: {s['reason']}" for s in result.first_skipped[:shown])
    return f"{result.skipped} file{_s(result.skipped)} skipped (first: {first})"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


@dataclass(frozen=True)
class _Item:
    name: str
    wnid: str


def sort_val(
    val_dir: Path,
    ground_truth: Path,
    synsets: Path,
    out: Path,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ValSort:
    """Links (or copies) every val image with a ground-truth line into ``out/<wnid>/``; see the module doc.
    ``progress`` hears (images placed, images to place) as they are placed."""
    _check_paths(val_dir, ground_truth, synsets, out)
    wnids = _read_synsets(synsets)
    truth = _read_truth(ground_truth, len(wnids))
    result = ValSort(out)
    items = _plan(val_dir, ground_truth, wnids, truth, result)
    by_class: dict[str, list[_Item]] = {}
    for item in items:
        by_class.setdefault(item.wnid, []).append(item)
    todo = _check_destinations(val_dir, out, by_class, result)
    result.classes = len(by_class)
    _place(val_dir, out, todo, result, progress)
    return result


def _check_paths(val_dir: Path, ground_truth: Path, synsets: Path, out: Path) -> None:
    if not val_dir.exists():
        raise UserError(f"{val_dir}: no such directory (VAL_DIR)")
    if not val_dir.is_dir():
        raise UserError(f"{val_dir}: not a directory (VAL_DIR)")
    for flag, path in (("--ground-truth", ground_truth), ("--synsets", synsets)):
        if not path.is_file():
            raise UserError(f"{flag} {path}: {'not a file' if path.exists() else 'no such file'}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    source, target = val_dir.resolve(), out.resolve()
    if target == source or source in target.parents:
        where = "is" if target == source else "is inside"
        raise UserError(f"--out {out}: {where} VAL_DIR {val_dir}; put the class folders somewhere else")


def _read_synsets(path: Path) -> list[str]:
    """``read_synsets`` (named errors, no wnid twice), each wnid also a safe folder name."""
    wnids = read_synsets(path)
    for number, wnid in enumerate(wnids, start=1):
        if wnid in (".", "..") or "/" in wnid or "\0" in wnid:
            raise UserError(f"--synsets {path}: ILSVRC2012_ID {number}: {wnid!r} cannot be a folder name")
    return wnids


def _read_truth(path: Path, synset_count: int) -> list[int]:
    truth = read_ground_truth(path, synset_count)
    if not truth:
        raise UserError(f"--ground-truth {path}: no ILSVRC2012_IDs in it")
    return truth


def _plan(val_dir: Path, ground_truth: Path, wnids: list[str], truth: list[int], result: ValSort) -> list[_Item]:
    """One scandir of VAL_DIR: what goes where, and what stays (counted in ``result``)."""
    with os.scandir(val_dir) as entries:
        found = sorted((e.name, e.is_file(), e.is_dir()) for e in entries)
    labels = ValLabels(wnids, truth, ground_truth.name)
    items = []
    for name, is_file, is_dir in found:
        if not is_file:
            result.skip(name, "a directory" if is_dir else "not a regular file")
            continue
        wnid, why = labels.wnid_of(name)
        if wnid is None:
            result.skip(name, why)
        else:
            items.append(_Item(name, wnid))
    if not items:
        what = "no files" if not found else f"no ILSVRC2012_val_XXXXXXXX.JPEG file with a line in {ground_truth}"
        detail = f"; {_skipped(result, 3)}" if result.skipped else ""
        raise UserError(f"{val_dir}: {what}; nothing to sort{detail}")
    return items


def _check_destinations(val_dir: Path, out: Path, by_class: dict[str, list[_Item]], result: ValSort) -> list[_Item]:
    """Every destination that exists already must hold the same bytes; otherwise nothing is touched."""
    todo: list[_Item] = []
    conflicts: list[str] = []
    for wnid, items in by_class.items():
        folder = out / wnid
        try:
            with os.scandir(folder) as entries:
                present = {e.name for e in entries}
        except FileNotFoundError:
            todo += items
            continue
        except NotADirectoryError:
            conflicts.append(f"{folder}: exists and is not a directory")
            continue
        for item in items:
            if item.name not in present:
                todo.append(item)
                continue
            problem = _differs(val_dir / item.name, folder / item.name)
            if problem:
                conflicts.append(f"{folder / item.name}: {problem}")
            else:
                result.already_there += 1
    if conflicts:
        more = [f"… and {len(conflicts) - SHOWN} more"] if len(conflicts) > SHOWN else []
        raise UserError(
            *conflicts[:SHOWN],
            *more,
            f"--out {out}: nothing was changed; move the conflicting files away (or pick another --out) and re-run",
        )
    return todo


def _differs(source: Path, dest: Path) -> str | None:
    """Why ``dest`` is not ``source`` (None when it is the same file, or a file with the same bytes)."""
    try:
        d = os.stat(dest)
    except FileNotFoundError:
        return "exists and is a dangling symlink"
    s = os.stat(source)
    if (s.st_dev, s.st_ino) == (d.st_dev, d.st_ino):
        return None
    if not os.path.isfile(dest):
        return "exists and is not a file"
    if s.st_size != d.st_size or not filecmp.cmp(source, dest, shallow=False):
        return f"exists with other content than {source}"
    return None


def _place(val_dir: Path, out: Path, todo: list[_Item], result: ValSort, progress: Callable[[int, int], None]) -> None:
    made: set[str] = set()
    can_link = True  # once a link crosses filesystems, every later one would too
    for done, item in enumerate(todo):
        progress(done, len(todo))
        folder = out / item.wnid
        if item.wnid not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(item.wnid)
        source, dest = val_dir / item.name, folder / item.name
        try:
            if can_link:
                try:
                    os.link(source, dest)
                    result.linked += 1
                    continue
                except OSError as exc:
                    if exc.errno not in COPY_INSTEAD:
                        raise
                    can_link = exc.errno != errno.EXDEV
            _copy(source, dest)
            result.copied += 1
        except OSError as exc:
            raise UserError(
                f"{dest}: cannot link or copy {source} ({exc.strerror or exc}); "
                f"{result.linked + result.copied} placed so far; re-running picks up from there"
            ) from None


def _copy(source: Path, dest: Path) -> None:
    """A copy under a hidden temporary name, renamed when complete: an interrupted run leaves no half image.

    The copy keeps the source's times but takes its mode from the umask, as every file clusterdeck writes
    (``shutil.copy2`` would carry a private 0600 over into a set the group shares)."""
    part = dest.with_name(f".{dest.name}.part")
    try:
        shutil.copyfile(source, part)
        st = os.stat(source)
        os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
