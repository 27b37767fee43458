"""``FileAccess`` over the connection's SFTP session, so the tailing readers follow a login node's run files.

A read that fails because the connection dropped becomes ``ConnectionLost`` (an OSError):
the tail keeps its offset and tries again at its next poll, which reconnects, so no line is
lost or read twice. SFTP gives no inode, so a tail tells a replaced file by its first bytes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import posixpath
from typing import TYPE_CHECKING, Any

from jobs.remote.ssh import ConnectionLost
from jobs.tail.access import FileStat, Handle

if TYPE_CHECKING:
    from jobs.remote.ssh import SshConnection


class SftpHandle:
    def __init__(self, conn: SshConnection, file: Any, generation: int) -> None:
        self.conn = conn
        self.file = file
        self.generation = generation
        """The connection it was opened on: after a reconnect it is dead, and says so without touching the new one."""

    def seek(self, offset: int) -> object:
        return self._call(self.file.seek, offset)

    def read(self, size: int) -> bytes:
        data: bytes = self._call(self.file.read, size)
        return data

    def close(self) -> None:
        if self.generation == self.conn.generation:  # a file of a dropped session needs no closing
            with contextlib.suppress(OSError):
                self._call(self.file.close)

    def _call(self, fn: Any, *args: Any) -> Any:
        if self.generation != self.conn.generation:
            raise ConnectionLost(f"connection to {self.conn.target.name} was made again since this file was opened")
        with self.conn.sftp_lock:
            try:
                return fn(*args)
            except Exception as exc:
                if _lost(self.conn, exc):
                    raise self.conn.lost(exc, self.generation) from None
                raise


def _lost(conn: SshConnection, exc: BaseException) -> bool:
    """Whether ``exc`` means the connection failed (rather than the server refusing this one request)."""
    import paramiko

    if isinstance(exc, FileNotFoundError | PermissionError):
        return False
    return isinstance(exc, paramiko.SSHException | EOFError | ConnectionError | TimeoutError) or not conn.is_up()


class SftpFiles:
    def __init__(self, conn: SshConnection) -> None:
        self.conn = conn

    def open(self, path: str) -> tuple[Handle, FileStat]:
        with self.conn.sftp_lock:
            sftp, generation = self.conn.sftp()
            try:
                file = sftp.open(path, "rb")
            except Exception as exc:
                if _lost(self.conn, exc):
                    raise self.conn.lost(exc, generation) from None
                raise
            try:
                size = file.stat().st_size or 0
            except Exception as exc:
                with contextlib.suppress(Exception):
                    file.close()
                if _lost(self.conn, exc):
                    raise self.conn.lost(exc, generation) from None
                raise
        return SftpHandle(self.conn, file, generation), FileStat(size, None)

    def list(self, directory: str, pattern: str) -> list[str]:
        with self.conn.sftp_lock:
            sftp, generation = self.conn.sftp()
            try:
                names = sftp.listdir(directory)
            except FileNotFoundError:
                return []
            except Exception as exc:
                if _lost(self.conn, exc):
                    raise self.conn.lost(exc, generation) from None
                raise
        return sorted(posixpath.join(directory, n) for n in fnmatch.filter(names, pattern))
