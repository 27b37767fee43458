"""Free space, checked before the first byte is written, and a disk that fills anyway, said in one line.

The stager, the shard step and the export all write large files to a filesystem someone else
may be filling too. Each checks before it starts that what it still has to write fits in what
is free (naming the path, the bytes needed and the bytes free), and turns a full disk met
mid-way into one line that names the file it was writing, never a traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from clusterdeck.jobs.errors import UserError

FULL = (errno.ENOSPC, errno.EDQUOT)
"""No space left, or a quota reached: the disk (or the user's share of it) is full."""


class WriteFailed(UserError):
    """A file could not be written (the disk filled, a size limit, an I/O error): one line naming it, no
    traceback, but the step failed (exit 1)."""

    exit_code = 1


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists: the filesystem a directory not made yet will be on."""
    return next((p for p in (path, *path.parents) if p.exists()), path)


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def require_free(field: str, where: Path, needed: int, what: str, hint: str) -> None:
    """A ``UserError`` (exit 2: choose another place) when ``needed`` bytes, that ``what`` needs, do not fit in the
    space free at ``where``."""
    existing = nearest_existing(where)
    free = free_bytes(existing)
    if needed > free:
        raise UserError(
            f"{field}: not enough space in {existing}: {what} needs {gb(needed)} ({needed} bytes), "
            f"{gb(free)} ({free} bytes) are free; {hint}"
        )


def is_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL


def free_text(where: Path) -> str:
    """``1.23 GB (1234567890 bytes) free`` at ``where``, or why it cannot be known."""
    try:
        free = free_bytes(nearest_existing(where))
    except OSError as exc:
        return f"free space unknown: {exc.strerror}"
    return f"{gb(free)} ({free} bytes) free"
