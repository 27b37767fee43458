"""The shard step's space: checked before the first byte, at submit when it can be, and a disk that fills anyway.

At job start the plan knows how many samples each shard holds and the mean bytes a sample
takes (measured on a seeded sample of the inputs), so the shards still to write are
estimated and must fit in the space free. At submit, before any listing, only a bound that
cannot overshoot is checked: the bytes of the input files themselves, when they are stored
as they are, counted over at most ``SUBMIT_FILES`` files, so a login node is never held up.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tarfile
from pathlib import Path

from clusterdeck.jobs import atomic
from clusterdeck.jobs.diskspace import WriteFailed, free_text, is_full, require_free
from clusterdeck.jobs.formats import registry as input_formats
from clusterdeck.jobs.shard.plan import ShardJob
from clusterdeck.jobs.shard.write import completed_part, part_path
from clusterdeck.jobs.spec import ShardSpec

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
"""Files counted at submit: other files in an input tree are skipped by the step and take no space."""
SUBMIT_FILES = 20_000
"""Input files whose sizes are added at submit; past this the check waits for the job (a stat each costs)."""
HINT = "free some space, or choose another shard.output"


def check_room(out: Path, jobs: list[ShardJob], sample_bytes: dict[str, float], tasks: int = 1) -> None:
    """The shards of ``jobs`` not written yet, at their estimated size, must fit in the space free at ``out``.

    A task passes the whole plan's shards, every task's: the array's tasks start together against the same
    free space, so each checking only its own share would let N tasks need N times what one checked.
    """
    todo = [job for job in jobs if completed_part(job, out, verify=False) is None]
    needed = sum(round(len(job.indices) * sample_bytes[job.split]) + tarfile.RECORDSIZE for job in todo)
    whole = f" of the whole plan (all {tasks} tasks together)" if tasks > 1 else ""
    if todo:
        require_free(
            "shard.output", out, needed, f"writing {len(todo)} shard(s){whole} (estimated from the inputs)", HINT
        )


def check_room_at_submit(spec: ShardSpec) -> None:
    """When ``shard.output`` exists already: the input files stored as they are must fit (a bound, never more)."""
    if not spec.output.is_dir() or spec.classes is not None or spec.resize_shorter or spec.jpeg_quality:
        return  # a subset or a re-encoding may need less: the job's own estimate decides
    needed = 0
    inputs = {inp.input.resolve(): inp for inp in (spec.train, spec.val) if inp is not None}  # one archive, two splits
    for inp in inputs.values():
        fmt = input_formats.get(inp.format)
        if fmt is None or not fmt.stored_as_is:  # its samples are encoded anew: their size is the job's to estimate
            continue
        size = _input_bytes(inp.input)
        if size is None:
            return
        needed += size
    if needed:
        needed -= _already_there(spec.output)
        require_free("shard.output", spec.output, needed, "storing the input images", HINT)


def _input_bytes(path: Path) -> int | None:
    """Bytes of the images under ``path`` (a tar: its size less its end blocks); None past ``SUBMIT_FILES``."""
    if path.is_file():
        return max(path.stat().st_size - tarfile.RECORDSIZE, 0)
    total = count = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            if not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            count += 1
            if count > SUBMIT_FILES:
                return None
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def _already_there(out: Path) -> int:
    """Bytes of shards a run wrote before into ``out`` that a resume keeps: they need no new space.

    Only a tar with its completed-part record (``.parts/<name>.json``, of the tar's very size) counts, as
    the step keeps only those: any other tar there (a stale shard of another plan, a copy) is replaced by
    rename, so both copies exist at the peak and its bytes are no room for the new one. A record of an
    earlier plan with other members still counts: the plan is not known at submit (no listing there).
    """
    total = 0
    for tar in out.glob("*.tar"):
        try:
            size = tar.stat().st_size
            record = atomic.read_json(part_path(out, tar.name.removesuffix(".tar")))
        except (OSError, ValueError):
            continue
        if tar.is_file() and isinstance(record, dict) and record.get("bytes") == size:
            total += size
    return total


def remove_temps(out: Path, jobs: list[ShardJob]) -> None:
    """Half-written files of these shards (a killed or failed attempt's): only this task writes these shards."""
    for job in jobs:
        for temp in out.glob(f".{glob.escape(job.name)}.tar.tmp-*"):
            temp.unlink(missing_ok=True)


def write_failed(exc: OSError, where: Path, done: int, total: int) -> BaseException:
    """A file that could not be written (a full disk above all) as one line naming it and saying what is kept;
    an error that names no file it was writing is left as it is."""
    if not (is_full(exc) or exc.filename):
        return exc
    name = Path(exc.filename) if exc.filename else where
    space = f" ({free_text(name.parent)})" if is_full(exc) else ""
    then = f"{HINT}, then resume the run" if is_full(exc) else "resume the run once that is mended"
    return WriteFailed(
        f"shard.output: {exc.strerror or exc} while writing {name}{space}; {done} of {total} shard(s) of this task "
        f"are finished and kept: {then}"
    )
