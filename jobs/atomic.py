"""Atomic file writes: a reader on a shared filesystem sees the old file or the new one, never half.

Files are created with the mode a plain ``open()`` gives under the writer's umask (0644 under 022, 0664
under 002), never ``tempfile.mkstemp``'s 0600: a lab shares one shard set and one runs root, and a
teammate must be able to read ``index.json`` as well as the tars beside it. The kernel applies the umask
to the ``0o666`` asked for here; reading the umask instead (``os.umask`` sets it to read it) would race
with other threads creating files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

FILE_MODE = 0o666
"""What every file is created with; the umask takes away the rest, as for ``open(path, "w")``."""

_TRIES = 100


def create_temp(path: Path) -> tuple[int, Path]:
    """A new empty file beside ``path`` under a unique hidden name, open for writing: (descriptor, its path).

    ``O_EXCL`` makes the name ours alone (as ``mkstemp`` does), and a symlink planted under it is refused.
    """
    for _ in range(_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path} after {_TRIES} tries")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path``'s new content into; when the block ends it is flushed to disk, renamed over
    ``path`` and the directory synced, so the rename itself survives a crash. If the block raises, ``path``
    is left as it was and the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Makes renames into ``path`` durable. Filesystems that cannot sync a directory (some FUSE and network
    ones answer EINVAL) already made the rename visible to every client, which is what readers need."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as f:
        f.write(data)


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())
