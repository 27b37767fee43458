"""The only way the readers touch files: open, stat and list, so the same readers can run over SFTP.

``LocalFiles`` is the local filesystem. A remote implementation (paramiko's SFTP client has
the same operations) gives the readers a run directory on a login node.
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
    """Same value while the path names the same file (inode and device); None where it cannot be known."""


class Handle(Protocol):
    def seek(self, offset: int) -> object: ...
    def read(self, size: int) -> bytes: ...
    def close(self) -> None: ...


class FileAccess(Protocol):
    def open(self, path: str) -> Handle:
        """An open file for reading; FileNotFoundError when there is none."""
        ...

    def stat(self, path: str) -> FileStat:
        """FileNotFoundError when there is no such file."""
        ...

    def list(self, directory: str, pattern: str) -> list[str]:
        """Paths in ``directory`` whose names match the glob ``pattern``, sorted; empty if there is no directory."""
        ...


class LocalFiles:
    def open(self, path: str) -> Handle:
        return open(path, "rb", buffering=0)

    def stat(self, path: str) -> FileStat:
        st = os.stat(path)
        return FileStat(st.st_size, (st.st_dev, st.st_ino))

    def list(self, directory: str, pattern: str) -> list[str]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted(os.path.join(directory, n) for n in fnmatch.filter(names, pattern))
