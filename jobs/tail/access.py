"""The only way the readers touch files: open, stat and list, so the same readers can run over SFTP.

``LocalFiles`` is the local filesystem. A remote implementation (paramiko's SFTP client has
the same operations: ``open``, ``stat`` on the open file, ``listdir``) gives the readers a run
directory on a login node.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FileStat:
    size: int
    identity: object = None
    """Same value while the path names the same file (device and inode); None where it cannot be known."""


class Handle(Protocol):
    def seek(self, offset: int) -> object: ...
    def read(self, size: int) -> bytes: ...
    def close(self) -> None: ...


class FileAccess(Protocol):
    def open(self, path: str) -> tuple[Handle, FileStat]:
        """The file open for reading, with its size and identity then; FileNotFoundError when there is none."""
        ...

    def list(self, directory: str, pattern: str) -> list[str]:
        """Paths in ``directory`` whose names match the glob ``pattern``, sorted; empty if there is no directory."""
        ...


class LocalFiles:
    def open(self, path: str) -> tuple[Handle, FileStat]:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 -- the caller keeps it open across polls
        st = os.fstat(f.fileno())
        return f, FileStat(st.st_size, (st.st_dev, st.st_ino))

    def list(self, directory: str, pattern: str) -> list[str]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted(os.path.join(directory, n) for n in fnmatch.filter(names, pattern))


def read_all(access: FileAccess, path: str, chunk: int = 1 << 16) -> bytes:
    """A small file (a run record) whole."""
    handle, _ = access.open(path)
    try:
        parts = []
        while data := handle.read(chunk):
            parts.append(data)
        return b"".join(parts)
    finally:
        handle.close()
