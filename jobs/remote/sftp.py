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

from jobs.tail.access import FileStat, Handle

if TYPE_CHECKING:
    from jobs.remote.ssh import SshConnection


class SftpHandle:
    def __init__(self, conn: SshConnection, file: Any) -> None:
        self.conn = conn
        self.file = file
        self.generation = conn.generation

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
            raise self.conn.lost(EOFError("reconnected since this file was opened"))
        with self.conn.sftp_lock:
            try:
                return fn(*args)
            except FileNotFoundError:
                raise
            except Exception as exc:
                if _lost(self.conn, exc):
                    raise self.conn.lost(exc) from None
                raise


def _lost(conn: SshConnection, exc: BaseException) -> bool:
    """Whether ``exc`` means the connection failed (rather than the server refusing this one request)."""
    import paramiko

    if isinstance(exc, FileNotFoundError | PermissionError):
        return False
    return isinstance(exc, paramiko.SSHException | EOFError | ConnectionError) or not conn.is_up()


class SftpFiles:
    def __init__(self, conn: SshConnection) -> None:
        self.conn = conn

    def open(self, path: str) -> tuple[Handle, FileStat]:
        with self.conn.sftp_lock:
            try:
                sftp = self.conn.sftp()
                file = sftp.open(path, "rb")
                size = file.stat().st_size or 0
            except FileNotFoundError:
                raise
            except Exception as exc:
                if _lost(self.conn, exc):
                    raise self.conn.lost(exc) from None
                raise
        return SftpHandle(self.conn, file), FileStat(size, None)

    def list(self, directory: str, pattern: str) -> list[str]:
        with self.conn.sftp_lock:
            try:
                names = self.conn.sftp().listdir(directory)
            except FileNotFoundError:
                return []
            except Exception as exc:
                if _lost(self.conn, exc):
                    raise self.conn.lost(exc) from None
                raise
        return sorted(posixpath.join(directory, n) for n in fnmatch.filter(names, pattern))
