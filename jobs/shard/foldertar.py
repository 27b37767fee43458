"""A tar of an ImageFolder tree (``[prefix/]<class>/<file>`` members) as the tree's own listing.

The samples are named and ordered as ``list_imagefolder`` names and orders the extracted tree's: classes from
the folder names, sorted; within a class, a folder's files (sorted) before its subfolders' (sorted, depth
first), as ``os.walk`` visits them; names ``<class>/<path below it>``. So a tar and its extracted tree give the
same shards, byte for byte, whatever order the archive holds its members in.

The prefix is the folder inside the archive that holds the class folders (``imagenet21k_train``); by default
the archive's single top folder when every file lies at least two folders deep under it, else the root. A file
that lies in no class folder under the prefix is an error naming it: it cannot be given a class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.sources import Entries, Source
from clusterdeck.jobs.shard.tarsource import open_for_headers, tar_members

ROOT = "."
"""``prefix = "."``: the class folders are at the archive's root (where the default would pick a top folder)."""


def parts_of(name: str) -> list[str]:
    """A member's path as its folders and file name, without ``./`` and empty parts."""
    return [p for p in name.split("/") if p not in ("", ".")]


def resolve_prefix(path: Path, names: Sequence[str], prefix: str | None) -> list[str]:
    """The folders (as parts) that hold the class folders: the given prefix, or the default one."""
    if prefix is not None:
        wanted = [] if prefix == ROOT else parts_of(prefix)
        if wanted and not any(parts_of(n)[: len(wanted)] == wanted for n in names):
            raise UserError(f"{path}: no member under {'/'.join(wanted)}/ (prefix); top folders: {_tops(names)}")
        return wanted
    tops = {parts[0] for parts in map(parts_of, names) if parts}
    deep = all(len(parts_of(n)) >= 3 for n in names)
    if len(tops) == 1 and deep:
        return [next(iter(tops))]
    if len(tops) > 1 and deep:
        raise UserError(
            f"{path}: its top folders ({_tops(names)}) each hold folders: set prefix to the one that holds the "
            f"class folders (e.g. prefix = {sorted(tops)[0]!r}), or prefix = '.' if they are the classes"
        )
    return []


def _tops(names: Sequence[str]) -> str:
    tops = sorted({parts[0] for parts in map(parts_of, names) if parts})
    return ", ".join(tops[:5]) + (f" … ({len(tops)})" if len(tops) > 5 else "") or "none"


def outside(path: Path, name: str, base: list[str]) -> UserError:
    under = f" under {'/'.join(base)}/" if base else ""
    return UserError(f"{path}: member {name} is in no class folder{under} (expected [prefix/]<class>/<file>)")


def folder_entries(
    path: Path, source: Source, members: Sequence[tuple[str, Any]], prefix: str | None, skipped: list[dict[str, str]]
) -> Entries:
    """The samples of ``members`` ((name, locator), archive order) under the prefix, in ImageFolder's order."""
    names = [name for name, _ in members]
    base = resolve_prefix(path, names, prefix)
    per_class: dict[str, dict[tuple[str, ...], Any]] = {}
    for name, loc in members:
        parts = parts_of(name)
        if parts[: len(base)] != base:
            continue  # another folder of the archive (imagenet21k_val beside imagenet21k_train)
        below = parts[len(base) :]
        if len(below) < 2:
            raise outside(path, name, base)
        if below[0].startswith("."):
            continue  # ImageFolder skips hidden folders too
        per_class.setdefault(below[0], {})[tuple(below[1:])] = loc  # a member stored twice: the later one
    if not per_class:
        raise UserError(
            f"{path}: no class folders{' under ' + '/'.join(base) if base else ''} (expected <class>/<file>)"
        )
    classes = sorted(per_class)
    entries = Entries(source, [], [], [], classes, skipped)
    for wnid in classes:
        files = per_class[wnid]
        for rel in sorted(files, key=walk_key):
            entries.add("/".join((wnid, *rel)), files[rel], wnid)
    return entries


def walk_key(rel: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """``os.walk``'s top-down order, folders and files sorted: a folder's own files before its subfolders."""
    return (*((1, d) for d in rel[:-1]), (0, rel[-1]))


@dataclass
class PlainMembers:
    """The regular files of a plain tar as (name, (offset, size)), the links and devices skipped, and whether
    every header was read."""

    files: list[tuple[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    complete: bool = True


def plain_members(path: Path, limit: int | None = None) -> PlainMembers:
    """The members of the plain tar ``path`` from its headers (nothing else is read); ``limit``: stop after that
    many headers (a check at submit)."""
    found = PlainMembers()
    with open_for_headers(path) as f:
        for n, member in enumerate(tar_members(f, str(path))):
            if limit is not None and n >= limit:
                found.complete = False
                break
            if member.isfile():
                found.files.append((member.name, (member.offset_data, member.size)))
            elif not member.isdir():
                found.skipped.append({"path": member.name, "reason": "not a regular file (a link or a device)"})
    return found


def check_members(path: Path, names: Iterable[str], prefix: str | None, complete: bool) -> None:
    """At submit: a member that can be in no class folder, from the headers read (``complete``: all of them).

    From part of the headers, only a file at the root (or directly under a given prefix) is sure to be outside;
    the job's listing sees the rest."""
    listed = list(names)
    if not listed:
        return
    if complete:
        base: list[str] | None = resolve_prefix(path, listed, prefix)
    else:  # a given prefix may lie past the headers read: it is taken as it is
        base = None if prefix is None else [] if prefix == ROOT else parts_of(prefix)
    for name in listed:
        parts = parts_of(name)
        if base is None:
            if len(parts) < 2:
                raise outside(path, name, [])
        elif parts[: len(base)] == base and len(parts) - len(base) < 2:
            raise outside(path, name, base)
